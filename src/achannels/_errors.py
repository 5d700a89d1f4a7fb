"""Errors for bad input where Channels ``assert``s.

Channels (and channels_redis) check some user input with ``assert``, so code
and tests written against them catch ``AssertionError``. achannels raises a
clear error of the natural type that is an ``AssertionError`` too, so both
``except ValueError`` and ``except AssertionError`` (or
``pytest.raises(AssertionError)``) keep working, and the check still runs
under ``python -O``.
"""

from __future__ import annotations

__all__ = [
    "ForeignChannel",
    "InvalidBody",
    "InvalidChannelNames",
    "InvalidFrame",
    "InvalidFrameType",
    "InvalidPrefix",
    "InvalidSameSite",
    "MessageNotDict",
    "ReservedMessageKey",
]


class InvalidSameSite(ValueError, AssertionError):
    """Raised when a cookie's ``samesite`` is not lax, strict or none."""


class MessageNotDict(TypeError, AssertionError):
    """Raised when a channel layer is given a message that is not a dict."""


class ReservedMessageKey(ValueError, AssertionError):
    """Raised when a message sent on a layer carries ``__asgi_channel__``,
    the key the layer itself uses."""

    def __init__(self, key: str = "__asgi_channel__") -> None:
        super().__init__(
            f"Messages must not contain the key {key!r}: the layer uses it to "
            "carry the target channel"
        )


class InvalidChannelNames(TypeError, AssertionError):
    """Raised when a list of channel names is empty or not a list."""


class ForeignChannel(ValueError, AssertionError):
    """Raised when a layer is asked to receive on a process-specific channel
    that another layer instance (process) made."""


class InvalidBody(TypeError, AssertionError):
    """Raised when an HTTP body given to a consumer or communicator is not
    bytes."""


class InvalidFrame(ValueError, AssertionError):
    """Raised when a test sends a WebSocket frame with neither or both of
    text and bytes."""


class InvalidFrameType(TypeError, AssertionError):
    """Raised when a test sends a WebSocket frame payload of the wrong type."""


class InvalidPrefix(TypeError, AssertionError):
    """Raised when a Redis layer's ``prefix`` is not a str."""
