"""pytest plugin: run a test suite written for Channels on achannels.

Load it on the command line or in the project's pytest configuration::

    pytest -p achannels.testing.channels_alias

    [tool.pytest.ini_options]
    addopts = "-p achannels.testing.channels_alias"

pytest imports ``-p`` plugins before it reads any ``conftest.py`` and before
pytest-django sets Django up, so ``import channels`` in conftests, test
modules and ``INSTALLED_APPS`` already gives achannels (see
``achannels.install_as_channels``). Server subprocesses the tests start are
not covered: call ``install_as_channels()`` in their ``settings.py`` or
``asgi.py``.

An installed real ``channels`` is reported in the run's header instead of
warned about: a suite whose warnings are errors would otherwise fail to
start, and asking for this plugin is asking for the shadowing.
"""

from __future__ import annotations

import importlib.machinery
import warnings

import pytest

from .._install import ChannelsInstalledWarning, install_as_channels

__all__ = ["pytest_report_header"]

_shadowed = importlib.machinery.PathFinder.find_spec("channels")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ChannelsInstalledWarning)
    install_as_channels()


def pytest_report_header(config: pytest.Config) -> str:
    """Say in the run's header that ``channels`` is achannels."""
    header = "achannels: install_as_channels() is active ('channels' is achannels)"
    if _shadowed is not None:
        header += f"; the installed {_shadowed.origin} is shadowed"
    return header
