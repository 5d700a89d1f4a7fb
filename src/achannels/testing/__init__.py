"""Test helpers: run ASGI applications and consumers without a server.

``ChannelsLiveServerTestCase`` (Django, served by uvicorn) is imported on
first use, so importing this package imports neither Django nor a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from achannels.testing.application import ApplicationCommunicator
from achannels.testing.http import HttpCommunicator
from achannels.testing.websocket import WebsocketCommunicator

if TYPE_CHECKING:
    from achannels.testing.live import ChannelsLiveServerTestCase

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
