"""WebSocket consumers, sync and async, plain and JSON (Channels 4.3 API).

Beyond Channels:

- ``max_message_size``: frames larger than this (characters of text or bytes
  of binary) close the socket with 1009 instead of reaching ``receive``.
- ``deny(status, body=..., headers=...)``: refuse the handshake with an HTTP
  response where the server supports the ``websocket.http.response``
  extension (uvicorn, hypercorn), and with a plain close (403) elsewhere.
- JSON consumers close with 1007 on a frame that is not valid JSON text,
  then raise the ``ValueError`` Channels raises.
- A handler error closes with 1011, sends to a gone client are dropped, and
  ``disconnect()`` runs on every exit (see ``generic/_connection.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar

from asgiref.sync import async_to_sync

from .._types import ChannelLayerProtocol, Message, Scope, Send
from ..consumer import AsyncConsumer, SyncConsumer
from ..exceptions import (
    AcceptConnection,
    DenyConnection,
    InvalidChannelLayerError,
    StopConsumer,
)
from ._connection import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    HTTP_RESPONSE_EXTENSION,
    ConnectionState,
    accept_event,
    close_event,
    run_connection,
    send_event,
)

__all__ = [
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]

logger = logging.getLogger("achannels.websocket")

NO_GROUPS_LAYER = (
    "BACKEND is unconfigured or doesn't support groups: this consumer lists "
    "groups, so configure a channel layer (CHANNEL_LAYERS or "
    "channel_layers.configure)"
)
NO_JSON_TEXT = "No text section for incoming WebSocket frame!"


class _WebsocketEdge:
    """State and edge handling shared by the sync and async consumers."""

    groups: list[str] | None = None
    #: Largest accepted incoming frame (characters or bytes); None = no limit.
    max_message_size: ClassVar[int | None] = None

    _state: ConnectionState
    _raw_send: Send
    scope: Scope

    # The mixin sits first in both consumers' MRO: `super()` below is
    # SyncConsumer or AsyncConsumer.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.groups is None:
            self.groups = []
        self._state = ConnectionState()

    # Hooks of AsyncConsumer.__call__, plain methods rather than coroutines:
    # an idle connection keeps a coroutine frame per level of its call chain.
    def _wrap_send(self, send: Send) -> Send:
        self._raw_send = self._state.tracking(send)
        return self._raw_send

    def _run(self, sources: list[Callable[[], Awaitable[Message]]]) -> Awaitable[None]:
        return run_connection(
            self._state,
            self._raw_send,
            super()._run(sources),  # type: ignore[misc]
            self.dispatch,  # type: ignore[attr-defined]
            self.scope.get("path", "?"),
        )

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
            self.scope.get("path", "?"),
            len(data),
            limit,
        )
        return True

    def _groups_layer(self) -> ChannelLayerProtocol:
        layer = getattr(self, "channel_layer", None)
        if layer is None or not hasattr(layer, "group_add"):
            raise InvalidChannelLayerError(NO_GROUPS_LAYER)
        return layer  # type: ignore[no-any-return]

    def _http_denial_supported(self) -> bool:
        return HTTP_RESPONSE_EXTENSION in (self.scope.get("extensions") or {})


def _denial_events(
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


class WebsocketConsumer(_WebsocketEdge, SyncConsumer):
    """Synchronous WebSocket consumer; handlers run in the connection's
    worker thread. Override ``connect``, ``receive`` and ``disconnect``."""

    def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; Accept/DenyConnection
        raised there accept or close the socket."""
        self._state.connected = True
        for group in self.groups or ():
            async_to_sync(self._groups_layer().group_add)(group, self.channel_name)
        try:
            self.connect()
        except AcceptConnection:
            self.accept()
        except DenyConnection:
            self.close()

    def connect(self) -> None:
        self.accept()

    def accept(
        self, subprotocol: str | None = None, headers: Iterable[Any] | None = None
    ) -> None:
        """Accept the handshake, optionally choosing a subprotocol and adding
        response headers (a list of ``(name, value)`` byte pairs)."""
        super().send(accept_event(subprotocol, headers))

    def deny(
        self,
        status: int = 403,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Refuse the handshake with an HTTP response (falls back to a plain
        close, which servers answer with 403, where unsupported)."""
        if not self._http_denial_supported():
            self.close()
            return
        for event in _denial_events(status, body, headers):
            super().send(event)

    def websocket_receive(self, message: Message) -> None:
        if self.max_message_size is not None and self._frame_too_large(message):
            self.close(CLOSE_MESSAGE_TOO_BIG)
        elif message.get("text") is not None:
            self.receive(text_data=message["text"])
        else:
            self.receive(bytes_data=message["bytes"])

    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Called with each frame's text or bytes."""

    def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        """Send a text or binary frame; ``close`` (True or a code) closes after."""
        super().send(send_event(text_data, bytes_data))
        if close:
            self.close(close)

    def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the socket (before accept: refuse the handshake with 403)."""
        super().send(close_event(code, reason))

    def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call ``disconnect(code)``, stop the consumer."""
        self._state.disconnected = self._state.client_gone = True
        for group in self.groups or ():
            async_to_sync(self._groups_layer().group_discard)(group, self.channel_name)
        self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    def disconnect(self, code: int) -> None:
        """Called once when the connection ends, whatever ended it."""


class JsonWebsocketConsumer(WebsocketConsumer):
    """``WebsocketConsumer`` that decodes and encodes JSON text frames."""

    def receive(
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        if text_data is None:
            self.close(CLOSE_INVALID_PAYLOAD)
            raise ValueError(NO_JSON_TEXT)
        try:
            content = self.decode_json(text_data)
        except ValueError:
            self.close(CLOSE_INVALID_PAYLOAD)
            raise
        self.receive_json(content, **kwargs)

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON frame."""

    def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        super().send(text_data=self.encode_json(content), close=close)

    @classmethod
    def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data)

    @classmethod
    def encode_json(cls, content: Any) -> str:
        return json.dumps(content)


class AsyncWebsocketConsumer(_WebsocketEdge, AsyncConsumer):
    """Asynchronous WebSocket consumer. Override ``connect``, ``receive`` and
    ``disconnect``."""

    async def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; Accept/DenyConnection
        raised there accept or close the socket."""
        self._state.connected = True
        for group in self.groups or ():
            await self._groups_layer().group_add(group, self.channel_name)
        try:
            await self.connect()
        except AcceptConnection:
            await self.accept()
        except DenyConnection:
            await self.close()

    async def connect(self) -> None:
        await self.accept()

    async def accept(
        self, subprotocol: str | None = None, headers: Iterable[Any] | None = None
    ) -> None:
        """Accept the handshake, optionally choosing a subprotocol and adding
        response headers (a list of ``(name, value)`` byte pairs)."""
        await self.base_send(accept_event(subprotocol, headers))

    async def deny(
        self,
        status: int = 403,
        body: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Refuse the handshake with an HTTP response (falls back to a plain
        close, which servers answer with 403, where unsupported)."""
        if not self._http_denial_supported():
            await self.close()
            return
        for event in _denial_events(status, body, headers):
            await self.base_send(event)

    async def websocket_receive(self, message: Message) -> None:
        # The per-frame path: plain checks inline, helpers only when needed.
        text = message.get("text")
        if self.max_message_size is not None and self._frame_too_large(message):
            await self.close(CLOSE_MESSAGE_TOO_BIG)
        elif text is not None:
            await self.receive(text_data=text)
        else:
            await self.receive(bytes_data=message["bytes"])

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Called with each frame's text or bytes."""

    async def send(  # type: ignore[override]
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        close: bool | int = False,
    ) -> None:
        """Send a text or binary frame; ``close`` (True or a code) closes after."""
        if text_data is not None:  # the common case, without a helper call
            await self.base_send({"type": "websocket.send", "text": text_data})
        else:
            await self.base_send(send_event(text_data, bytes_data))
        if close:
            await self.close(close)

    async def close(
        self, code: int | bool | None = None, reason: str | None = None
    ) -> None:
        """Close the socket (before accept: refuse the handshake with 403)."""
        await self.base_send(close_event(code, reason))

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call ``disconnect(code)``, stop the consumer."""
        self._state.disconnected = self._state.client_gone = True
        for group in self.groups or ():
            await self._groups_layer().group_discard(group, self.channel_name)
        await self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Called once when the connection ends, whatever ended it."""


class AsyncJsonWebsocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` that decodes and encodes JSON text frames."""

    async def receive(
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        if text_data is None:
            await self.close(CLOSE_INVALID_PAYLOAD)
            raise ValueError(NO_JSON_TEXT)
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            await self.close(CLOSE_INVALID_PAYLOAD)
            raise
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Called with each decoded JSON frame."""

    async def send_json(self, content: Any, close: bool | int = False) -> None:
        """Encode ``content`` as JSON and send it as a text frame."""
        await super().send(text_data=await self.encode_json(content), close=close)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content)
