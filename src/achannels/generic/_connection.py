"""What the WebSocket consumers share: the connection's state, the events
they send, and the guarantees at the connection's edge.

Channels leaves the edge to the server, so the outcome of a crash, a client
that vanished or a server shutdown differs between Daphne, uvicorn and
hypercorn. Here the consumer itself makes it the same everywhere:

- a handler that raises after the handshake closes the socket with 1011
  before the error propagates to the server (which logs it once);
- sends after the socket closed, or to a client that went away, are dropped
  instead of raising server-specific errors;
- ``websocket_disconnect`` (and so group cleanup and ``disconnect()``) runs
  exactly once on every exit path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._types import Message, Send
from ..exceptions import StopConsumer

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "HTTP_RESPONSE_EXTENSION",
    "ConnectionState",
    "accept_event",
    "close_event",
    "run_connection",
    "send_event",
]

logger = logging.getLogger("achannels.websocket")

CLOSE_GOING_AWAY = 1001
CLOSE_ABNORMAL = 1006
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

#: ASGI extension that lets an application answer a handshake with an HTTP
#: response instead of a bare 403.
HTTP_RESPONSE_EXTENSION = "websocket.http.response"

# How long the cleanup of an abnormal end may take before it is abandoned.
CLEANUP_TIMEOUT = 10.0


class ConnectionState:
    """Where one WebSocket connection stands, as its consumer sees it."""

    __slots__ = (
        "_send",
        "accepted",
        "client_gone",
        "closed",
        "connected",
        "disconnected",
    )

    def __init__(self) -> None:
        self.connected = False  # websocket.connect was handled
        self.accepted = False  # we sent websocket.accept
        self.closed = False  # we sent websocket.close or an HTTP denial
        self.client_gone = False  # the client left, or a send to it failed
        self.disconnected = False  # websocket_disconnect has run
        self._send: Send | None = None  # the server's send, once tracking

    @property
    def open(self) -> bool:
        return self.accepted and not (self.closed or self.client_gone)

    def tracking(self, send: Send) -> Send:
        """Wrap the server's ``send`` to record the connection's state and to
        drop sends that the server could only answer with an error."""
        self._send = send
        # A bound method rather than a closure: one small object per
        # connection instead of a function and its cells.
        return self._tracked_send

    async def _tracked_send(self, message: Message) -> None:
        if self.closed or self.client_gone:
            logger.debug("dropped %s: the socket is closed", message.get("type"))
            return
        message_type = message["type"]
        if message_type == "websocket.send":
            pass  # the common case, tested first
        elif message_type == "websocket.accept":
            self.accepted = True
        elif message_type == "websocket.close" or (
            message_type == "websocket.http.response.body"
            and not message.get("more_body", False)
        ):
            self.closed = True
        send = self._send
        assert send is not None, "tracking() sets the server's send first"
        try:
            await send(message)
        except OSError:
            # The client vanished mid-send (uvicorn raises
            # ClientDisconnected, an OSError). Its websocket.disconnect
            # is on its way; end quietly rather than crash the handler.
            self.client_gone = True


def accept_event(subprotocol: str | None, headers: Iterable[Any] | None) -> Message:
    event: Message = {"type": "websocket.accept", "subprotocol": subprotocol}
    if headers:
        event["headers"] = list(headers)
    return event


def send_event(text_data: str | None, bytes_data: bytes | None) -> Message:
    # `is not None`: an empty text frame is a frame (Channels treats it as
    # "no data" in some places; we never do).
    if text_data is not None:
        return {"type": "websocket.send", "text": text_data}
    if bytes_data is not None:
        return {"type": "websocket.send", "bytes": bytes_data}
    raise ValueError("You must pass one of bytes_data or text_data")


def close_event(code: int | bool | None, reason: str | None) -> Message:
    event: Message = {"type": "websocket.close"}
    # `send(..., close=True)` passes True, meaning "the default code".
    if code is not None and code is not True:
        event["code"] = code
    if reason:
        event["reason"] = reason
    return event


async def run_connection(
    state: ConnectionState,
    raw_send: Send,
    run: Awaitable[None],
    dispatch: Callable[[Message], Awaitable[None]],
    path: str,
) -> None:
    """Await a WebSocket consumer's dispatch loop (``run``) with the edge
    guarantees."""
    end_code = CLOSE_ABNORMAL
    try:
        await run
    except StopConsumer:
        raise
    except asyncio.CancelledError:
        end_code = CLOSE_GOING_AWAY  # the server is shutting down
        if state.open:
            # Tell the client before cleanup runs: otherwise the server sees
            # the application end without a close and says 1011 (hypercorn
            # after its graceful timeout) or drops the socket (1006).
            await _close_going_away(raw_send, path)
        raise
    except Exception:
        end_code = CLOSE_INTERNAL_ERROR
        if state.open:
            await raw_send({"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR})
        raise
    finally:
        if state.connected and not state.disconnected:
            await _finish_disconnect(dispatch, end_code, path)


async def _close_going_away(raw_send: Send, path: str) -> None:
    try:
        await asyncio.wait_for(
            raw_send({"type": "websocket.close", "code": CLOSE_GOING_AWAY}),
            CLEANUP_TIMEOUT,
        )
    except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
        # The server may be tearing the socket down already; the close is a
        # courtesy, and disconnect handling must run regardless.
        logger.debug("could not send 1001 to WebSocket %s: %r", path, exc)


async def _finish_disconnect(
    dispatch: Callable[[Message], Awaitable[None]], code: int, path: str
) -> None:
    """Run the consumer's disconnect handling for an end the client did not
    announce, so group memberships and user cleanup never leak."""
    try:
        await asyncio.wait_for(
            dispatch({"type": "websocket.disconnect", "code": code}), CLEANUP_TIMEOUT
        )
    except StopConsumer:
        pass
    except Exception:
        logger.exception("disconnect handling failed for WebSocket %s", path)
