"""Exceptions users raise and catch; the names and bases follow Channels 4.3."""

__all__ = [
    "AcceptConnection",
    "ChannelFull",
    "DenyConnection",
    "InvalidChannelLayerError",
    "MessageTooLarge",
    "ReceiverGone",
    "RequestAborted",
    "RequestTimeout",
    "StopConsumer",
]


class RequestAborted(Exception):
    """Raised when the client went away while its HTTP request body was read."""


class RequestTimeout(RequestAborted):
    """Raised when the client took too long to send its HTTP request body."""


class InvalidChannelLayerError(ValueError):
    """Raised when a channel layer alias is missing or its configuration is
    unusable (no ``BACKEND``, a backend that cannot be imported, bad options)."""


class AcceptConnection(Exception):
    """Raise from ``websocket_connect`` to accept the WebSocket handshake."""


class DenyConnection(Exception):
    """Raise from ``websocket_connect`` to refuse the WebSocket handshake."""


class ChannelFull(Exception):
    """Raised by a channel layer's ``send`` when the target channel already
    holds as many messages as its capacity allows."""


class MessageTooLarge(Exception):
    """Raised by a channel layer when a message exceeds the size it can carry."""


class ReceiverGone(RuntimeError):
    """Raised in a Redis layer's waiting ``receive()`` when the layer's
    connections on its event loop are closed under it (``close()``,
    ``close_pools()``, the pub/sub layer's ``flush()``, or the loop closing).
    The layer reconnects on next use. New in achannels; a ``RuntimeError``."""


class StopConsumer(Exception):
    """Raise inside a consumer handler to end the consumer cleanly; the
    application instance then returns without error."""
