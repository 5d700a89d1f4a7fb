"""Lazy bridges to Django for the core modules.

The core must work without Django installed and must not import it at module
import time, so everything here imports Django inside the function that needs
it and answers "no" cheaply when Django is absent or unconfigured.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

__all__ = [
    "close_old_connections",
    "connections_kept_open",
    "connections_must_stay_open",
    "django_database_in_use",
    "django_settings_configured",
]

# Test communicator calls in progress, process-wide: the application they
# drive runs in other tasks (with an empty context, as under a server) and
# in worker threads, so neither a context variable nor a thread-local would
# reach the code that closes connections.
_kept_open = 0
_kept_open_lock = threading.Lock()


@contextlib.contextmanager
def connections_kept_open() -> Iterator[None]:
    """While the block runs, achannels closes no Django database connection.

    The test communicators wrap their calls in it, as Channels 4.2+ does
    (there by patching ``close_old_connections`` to a no-op): a Django
    ``TestCase`` runs in a transaction on one connection, and closing it
    from the application under test would end the test's database.
    """
    global _kept_open
    with _kept_open_lock:
        _kept_open += 1
    try:
        yield
    finally:
        with _kept_open_lock:
            _kept_open -= 1


def connections_must_stay_open() -> bool:
    """True while a test communicator call is in progress."""
    return _kept_open > 0


def django_settings_configured() -> bool:
    """True when Django is importable and its settings are configured."""
    # Only look if the program already imported Django: a core module must
    # never be the one that drags Django in.
    conf = sys.modules.get("django.conf")
    if conf is None:
        return False
    return bool(conf.settings.configured)


def django_database_in_use() -> bool:
    """True when Django is configured with at least one database."""
    if not django_settings_configured():
        return False
    from django.conf import settings

    return bool(getattr(settings, "DATABASES", None))


def close_old_connections() -> None:
    """Close Django database connections that are unusable or past their age.

    Does nothing unless Django is configured with a database. Call it from
    the thread that owns the connections (Django's connections are per
    thread), before and after running user code there.
    """
    if _kept_open or not django_database_in_use():
        return
    from django.db import close_old_connections as close_django_connections

    close_django_connections()
