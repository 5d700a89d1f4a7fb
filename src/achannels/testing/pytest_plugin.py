"""pytest fixtures for end-to-end tests of a Django project served by uvicorn.

Enable it in a ``conftest.py`` (it is not loaded automatically)::

    pytest_plugins = ["achannels.testing.pytest_plugin"]

and set ``DJANGO_SETTINGS_MODULE``. Then::

    def test_chat(channels_live_server):
        url = channels_live_server.ws_url + "/ws/chat/"

``channels_live_server`` is a session-wide ``LiveServer`` (see
``achannels.testing.live``). Its database is the test database: with
pytest-django, the one its ``django_db_setup`` fixture creates (mark tests
that write to it ``@pytest.mark.django_db(transaction=True)`` so the server
sees their data); without pytest-django, this plugin sets up the test
databases for the session itself (Django's ``setup_databases``) and tears
them down at the end, and tests write to them directly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .live import LiveServer

__all__ = ["channels_live_server", "channels_test_databases"]


@pytest.fixture(scope="session")
def channels_test_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """Make sure the test databases exist for the session: pytest-django's
    ``django_db_setup`` when that plugin is active, else Django's own
    ``setup_databases`` (and ``teardown_databases`` afterwards)."""
    if request.config.pluginmanager.hasplugin("django"):
        request.getfixturevalue("django_db_setup")
        yield
        return
    from django.apps import apps
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    import django

    if not apps.ready:
        django.setup()
    setup_test_environment()
    try:
        old_config = setup_databases(verbosity=0, interactive=False)
        try:
            yield
        finally:
            teardown_databases(old_config, verbosity=0)
    finally:
        teardown_test_environment()


@pytest.fixture(scope="session")
def channels_live_server(channels_test_databases: None) -> Iterator[LiveServer]:
    """The project's ``ASGI_APPLICATION`` served by uvicorn in a subprocess
    on a free port for the whole session, on the test databases, with static
    files: use ``.url`` and ``.ws_url``."""
    with LiveServer() as server:
        yield server
