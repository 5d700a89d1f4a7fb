"""Test helpers: run ASGI applications and consumers without a server.

``ChannelsLiveServerTestCase`` (Django, served by uvicorn) is imported on
first use, so importing this package imports neither Django nor a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    # PEP 562: resolve the Django-only name lazily.
    if name == "ChannelsLiveServerTestCase":
        return importlib.import_module(
            "achannels.testing.live"
        ).ChannelsLiveServerTestCase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
