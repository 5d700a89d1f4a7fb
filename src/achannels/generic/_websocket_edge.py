"""The WebSocket edge: what the sync and async WebSocket consumers share
(the connection's state, the events they send, the checks on what arrives)
and the guarantees at the connection's end.

Channels leaves the edge to the server, so the outcome of a crash, a client
that vanished or a server shutdown differs between Daphne, uvicorn and
hypercorn. Here the consumer itself makes it the same everywhere:

- a handler that raises after the handshake closes the socket with 1011
  before the error propagates to the server (which logs it once): uvicorn
  would drop the TCP connection (the client sees 1006), granian would close
  with 1005, hypercorn with 1011. The test communicators leave that close
  (a ``FailureClose``) out of their output, since Channels sends none and a
  test written for it expects the error;
- a server shutdown that cancels the consumer closes an open socket with
  1001 before cleanup runs;
- sends after the socket closed, or to a client that went away, are dropped
  instead of raising server-specific errors;
- ``websocket_disconnect`` (and so group cleanup and ``disconnect()``) runs
  exactly once on every exit path, except that, as in Channels, a
  ``connect()`` that raises before answering the handshake gets no
  ``disconnect()`` (its groups are still left; served by a real server, the
  error is logged once, naming consumer and path, and the handshake is
  refused).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar

import anyio

from .._explain import explain, explain_missing_layer, how_to_configure_layer
from .._types import ChannelLayerProtocol, Message, Receive, Scope, Send
from ..exceptions import InvalidChannelLayerError, StopConsumer

__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "HTTP_RESPONSE_EXTENSION",
    "FailureClose",
    "WebsocketEdge",
    "WebsocketState",
    "accept_event",
    "close_event",
    "denial_events",
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


class FailureClose(dict[str, Any]):
    """The ``websocket.close`` a consumer sends because a handler is failing
    (1011; 1007 for a frame a JSON consumer cannot decode); the handler's
    error propagates right after it.

    Servers see a plain close event. The test communicators drop it from
    their output: a Channels consumer sends no close there, so a test written
    for Channels expects the error, not a close frame.
    """

    def __init__(self, code: int) -> None:
        super().__init__(type="websocket.close", code=code)


class WebsocketState(enum.Enum):
    """Where one WebSocket connection stands, as its consumer sees it.

    ``NEW`` -> ``CONNECTING`` when ``websocket_connect`` runs; -> ``CONNECTED``
    when the consumer sends ``websocket.accept``; -> ``CLOSED`` when it sends
    ``websocket.close`` or the last part of an HTTP denial, or a send fails
    because the client went away; -> ``DISCONNECTED`` from any state when
    ``websocket_disconnect`` runs. Nothing leaves ``DISCONNECTED``.
    """

    #: ``websocket.connect`` not handled yet: no disconnect handling is owed.
    NEW = "new"
    #: ``websocket_connect`` ran (groups joined); the handshake is unanswered.
    CONNECTING = "connecting"
    #: Accepted: frames flow both ways.
    CONNECTED = "connected"
    #: We closed or denied, or the client is gone: sends are dropped, and the
    #: disconnect handling is still owed.
    CLOSED = "closed"
    #: ``websocket_disconnect`` ran: nothing more is owed or sent.
    DISCONNECTED = "disconnected"


# Module globals for the per-message checks: an attribute of the enum class
# costs several times a global lookup.
_NEW = WebsocketState.NEW
_CONNECTING = WebsocketState.CONNECTING
_CONNECTED = WebsocketState.CONNECTED
_CLOSED = WebsocketState.CLOSED
_DISCONNECTED = WebsocketState.DISCONNECTED


class WebsocketEdge:
    """State and edge handling shared by the sync and async consumers.

    The mixin sits first in both consumers' MRO: ``super()`` below is
    ``SyncConsumer`` or ``AsyncConsumer``.
    """

    groups: list[str] | None = None
    #: Largest accepted incoming frame (characters or bytes); None = no limit.
    max_message_size: ClassVar[int | None] = None

    scope: Scope

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups is None:
            self.groups = []
        self._connection_state: WebsocketState = _NEW
        self._server_send: Send | None = None
        # What ``_run`` made ``base_send``: while it still is, a frame on an
        # open socket may skip ``_tracked_send`` (it changes no state) and go
        # straight to the server, saving a coroutine per frame. With hundreds
        # of busy connections the coroutines in flight outlive young garbage
        # collections, which then run more often and scan more.
        self._edge_send: Any = None

    # The AsyncConsumer.__call__ hooks: plain methods returning what is
    # awaited, not coroutines awaiting it, since an idle connection keeps a
    # coroutine frame per level of its call chain.
    def _run(self, receive: Receive, send: Send) -> Awaitable[None]:
        # Each connection starts fresh, even on an instance used again.
        self._connection_state = _NEW
        self._server_send = send
        # A bound method rather than a closure: one small object per
        # connection instead of a function and its cells.
        run: Awaitable[None] = super()._run(receive, self._tracked_send)  # type: ignore[misc]
        self._edge_send = self.base_send  # type: ignore[attr-defined]
        return run

    # The AsyncConsumer.__call__ hook, called when the dispatch loop ended.
    def _run_ended(self, error: BaseException | None) -> Awaitable[bool] | None:
        state = self._connection_state
        if (state is _NEW or state is _DISCONNECTED) and (
            error is None or isinstance(error, StopConsumer)
        ):
            return None  # nothing owed: the usual end, after websocket.disconnect
        return self._guard_end(error)

    def _send_failed(self) -> None:
        # The client vanished mid-send (uvicorn raises ClientDisconnected,
        # an OSError). Its websocket.disconnect is on its way; end quietly
        # rather than crash the handler.
        if self._connection_state is not _DISCONNECTED:
            self._connection_state = _CLOSED

    def _handshake_started(self) -> None:
        """Record that ``websocket_connect`` runs: disconnect handling is owed."""
        if self._connection_state is _NEW:
            self._connection_state = _CONNECTING

    def _handle_disconnect(self) -> None:
        """Record that ``websocket_disconnect`` runs: nothing more is owed."""
        self._connection_state = _DISCONNECTED

    async def _tracked_send(self, message: Message) -> None:
        """The server's ``send``, recording the connection's state and
        dropping sends that the server could only answer with an error."""
        state = self._connection_state
        if state is not _CONNECTED or message["type"] != "websocket.send":
            if state is _CLOSED or state is _DISCONNECTED:
                logger.debug("dropped %s: the socket is closed", message.get("type"))
                return
            self._connection_state = _state_after(state, message)
        send = self._server_send
        assert send is not None, "_run() sets the server's send first"
        try:
            await send(message)
        except OSError:
            self._send_failed()

    async def _guard_end(self, error: BaseException | None) -> bool:
        """Give the end of the dispatch loop (``error`` ended it, None: it
        returned) the edge guarantees; return whether ``error`` was handled
        here (a served handshake refused) rather than to be re-raised."""
        end_code = CLOSE_ABNORMAL
        try:
            if isinstance(error, asyncio.CancelledError):
                end_code = CLOSE_GOING_AWAY  # the server is shutting down
                if self._connection_state is _CONNECTED:
                    # Tell the client before cleanup runs: otherwise the
                    # server sees the application end without a close and
                    # says 1011 (hypercorn after its graceful timeout) or
                    # drops the socket (1006).
                    await self._close_going_away()
                return False
            if not isinstance(error, Exception) or isinstance(error, StopConsumer):
                return False
            exc = error  # a handler's error
            end_code = CLOSE_INTERNAL_ERROR
            if self._connection_state is _CONNECTED:
                await self._tracked_send(FailureClose(CLOSE_INTERNAL_ERROR))
            elif self._connection_state is _CONNECTING:
                # As in Channels, a connection whose connect() failed before
                # answering the handshake gets no disconnect(): it would
                # trip over state connect() never set and add a second,
                # misleading traceback. Its groups are still left.
                self._connection_state = _DISCONNECTED
                explain_missing_layer(self, exc)
                await self._leave_groups()
                if "asgi" in self.scope:
                    # Served: log it once here, naming consumer and path
                    # (servers log tracebacks without either, and granian
                    # drops exception notes), and refuse the handshake.
                    logger.error(
                        "%s failed before accepting WebSocket %s; "
                        "disconnect() does not run for this connection",
                        type(self).__qualname__,
                        self._path,
                        exc_info=exc,
                    )
                    await self._refuse_handshake()
                    return True
                # A communicator, as in Channels, gets the exception.
                explain(
                    exc,
                    f"raised by {type(self).__qualname__} for WebSocket "
                    f"{self._path!r} before the handshake was answered; "
                    "disconnect() does not run for this connection",
                )
            return False
        finally:
            state = self._connection_state
            if state is not _NEW and state is not _DISCONNECTED:
                await self._finish_disconnect(end_code)

    async def _close_going_away(self) -> None:
        try:
            await asyncio.wait_for(
                self._tracked_send(
                    {"type": "websocket.close", "code": CLOSE_GOING_AWAY}
                ),
                CLEANUP_TIMEOUT,
            )
        except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
            # The server may be tearing the socket down already; the close is
            # a courtesy, and disconnect handling must run regardless.
            logger.debug("could not send 1001 to WebSocket %s: %r", self._path, exc)

    async def _finish_disconnect(self, code: int) -> None:
        """Run the consumer's disconnect handling for an end the client did
        not announce, so group memberships and user cleanup never leak."""
        dispatch = self.dispatch  # type: ignore[attr-defined]
        try:
            await asyncio.wait_for(
                dispatch({"type": "websocket.disconnect", "code": code}),
                CLEANUP_TIMEOUT,
            )
        except StopConsumer:
            pass
        except Exception:
            logger.exception("disconnect handling failed for WebSocket %s", self._path)

    async def _refuse_handshake(self) -> None:
        """Answer the handshake after an error: 500 where the server takes
        an HTTP response (the status uvicorn gives an application that
        raised), else a close, which servers answer with 403."""
        send = self._server_send
        assert send is not None, "_run() sets the server's send first"
        events = (
            denial_events(500, b"Internal Server Error", None)
            if self._http_denial_supported()
            else [{"type": "websocket.close", "code": CLOSE_INTERNAL_ERROR}]
        )
        try:
            for event in events:
                await send(event)
        except (OSError, RuntimeError) as exc:
            logger.debug("could not refuse WebSocket %s: %r", self._path, exc)

    async def _leave_groups(self) -> None:
        layer = getattr(self, "channel_layer", None)
        if not self.groups or layer is None or not hasattr(layer, "group_discard"):
            return
        channel_name: str = self.channel_name  # type: ignore[attr-defined]
        try:
            with anyio.move_on_after(CLEANUP_TIMEOUT, shield=True):
                for group in self.groups:
                    await layer.group_discard(group, channel_name)
        except Exception:
            logger.exception("leaving groups failed for WebSocket %s", self._path)

    @property
    def _path(self) -> str:
        path: str = self.scope.get("path", "?")
        return path

    def _frame_too_large(self, message: Message) -> bool:
        limit = self.max_message_size
        if limit is None:
            return False
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        if len(data) <= limit:
            return False
        logger.warning(
            "closing WebSocket %s with 1009: frame of %d exceeds max_message_size %d",
            self._path,
            len(data),
            limit,
        )
        return True

    def _groups_layer(self) -> ChannelLayerProtocol:
        layer = getattr(self, "channel_layer", None)
        if layer is None or not hasattr(layer, "group_add"):
            alias = getattr(self, "channel_layer_alias", "default")
            # Channels' words first: tests match on them.
            raise InvalidChannelLayerError(
                "BACKEND is unconfigured or doesn't support groups: "
                f"{type(self).__qualname__} lists groups, but "
                + (
                    how_to_configure_layer(alias)
                    if layer is None
                    else f"the layer for alias {alias!r} has no group_add"
                )
            )
        return layer  # type: ignore[no-any-return]

    def _http_denial_supported(self) -> bool:
        return HTTP_RESPONSE_EXTENSION in (self.scope.get("extensions") or {})


def _state_after(state: WebsocketState, message: Message) -> WebsocketState:
    """The state once ``message`` is sent (the socket is not closed)."""
    message_type = message["type"]
    if message_type == "websocket.accept":
        return _CONNECTED
    if message_type == "websocket.close" or (
        message_type == "websocket.http.response.body"
        and not message.get("more_body", False)
    ):
        return _CLOSED
    return state


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


def denial_events(
    status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] | None
) -> list[Message]:
    return [
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": list(
                headers or [(b"content-type", b"text/plain; charset=utf-8")]
            ),
        },
        {"type": "websocket.http.response.body", "body": body},
    ]
