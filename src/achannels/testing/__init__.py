"""Test helpers: run ASGI applications and consumers without a server.

``ChannelsLiveServerTestCase`` (Django, served by uvicorn) is imported on
first use, so importing this package imports neither Django nor a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._submodules import lazy_submodules
from .application import ApplicationCommunicator
from .http import HttpCommunicator
from .websocket import WebsocketCommunicator

if TYPE_CHECKING:
    from .live import ChannelsLiveServerTestCase

__all__ = [
    "ApplicationCommunicator",
    "ChannelsLiveServerTestCase",
    "HttpCommunicator",
    "WebsocketCommunicator",
]


def _live_server_test_case(name: str) -> Any:
    # PEP 562: resolve the Django-only name lazily.
    if name == "ChannelsLiveServerTestCase":
        return importlib.import_module(
            "achannels.testing.live"
        ).ChannelsLiveServerTestCase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Submodules (``achannels.testing.live``) load on first use too.
__getattr__ = lazy_submodules(__name__, __path__, _live_server_test_case)
