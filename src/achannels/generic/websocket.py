"""WebSocket consumers, sync and async, plain and JSON (Channels 4.3 API).

Beyond Channels:

- ``max_message_size``: frames larger than this (characters of text or bytes
  of binary) close the socket with 1009 instead of reaching ``receive``.
- ``deny(status, body=..., headers=...)``: refuse the handshake with an HTTP
  response where the server supports the ``websocket.http.response``
  extension (uvicorn, hypercorn), and with a plain close (403) elsewhere.
- JSON consumers close with 1007 on a frame that is not valid JSON text,
  then raise the ``ValueError`` Channels raises (the test communicators
  show only the error, as with Channels).
- A handler error closes with 1011 (the test communicators show only the
  error, as with Channels), sends to a gone client are dropped, and
  ``disconnect()`` runs on every exit once ``connect()`` went through (see
  ``generic/_websocket_edge.py``); as in Channels, not after it raised.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable
from typing import Any

from asgiref.sync import async_to_sync

from .._db import aclose_old_connections as aclose_old_connections
from .._types import Message
from ..consumer import AsyncConsumer, SyncConsumer
from ..exceptions import AcceptConnection, DenyConnection, StopConsumer
from ..exceptions import InvalidChannelLayerError as InvalidChannelLayerError
from ._websocket_edge import (
    _CONNECTED,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    FailureClose,
    WebsocketEdge,
    accept_event,
    close_event,
    denial_events,
    send_event,
)

__all__ = [
    "AsyncJsonWebsocketConsumer",
    "AsyncWebsocketConsumer",
    "JsonWebsocketConsumer",
    "WebsocketConsumer",
]

NO_JSON_TEXT = "No text section for incoming WebSocket frame!"


class WebsocketConsumer(WebsocketEdge, SyncConsumer):
    """Synchronous WebSocket consumer; handlers run in the connection's
    worker thread. Override ``connect``, ``receive`` and ``disconnect``."""

    def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; Accept/DenyConnection
        raised there accept or close the socket."""
        self._handshake_started()
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
        for event in denial_events(status, body, headers):
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
        self._handle_disconnect()
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
            self.base_send(FailureClose(CLOSE_INVALID_PAYLOAD))
            raise ValueError(NO_JSON_TEXT)
        try:
            content = self.decode_json(text_data)
        except ValueError:
            self.base_send(FailureClose(CLOSE_INVALID_PAYLOAD))
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


class AsyncWebsocketConsumer(WebsocketEdge, AsyncConsumer):
    """Asynchronous WebSocket consumer. Override ``connect``, ``receive`` and
    ``disconnect``."""

    async def websocket_connect(self, message: Message) -> None:
        """Join ``groups``, then call ``connect()``; Accept/DenyConnection
        raised there accept or close the socket."""
        self._handshake_started()
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
        for event in denial_events(status, body, headers):
            await self.base_send(event)

    async def websocket_receive(self, message: Message) -> None:
        # A coroutine function, as in Channels: code may inspect it. The
        # dispatch loop skips it while it is this very function (below).
        await self._receive_frame(message)

    def _receive_frame(self, message: Message) -> Awaitable[None]:
        # The per-frame path: plain checks inline, helpers only when needed.
        text = message.get("text")
        if self.max_message_size is not None and self._frame_too_large(message):
            return self.close(CLOSE_MESSAGE_TOO_BIG)
        if text is not None:
            return self.receive(text_data=text)
        return self.receive(bytes_data=message["bytes"])

    def _start_handler(self, message: Message) -> Awaitable[None]:
        # A frame whose handler is websocket_receive as defined here goes
        # straight to what it awaits: one coroutine fewer per frame. An
        # override, a patch or another message type takes the usual lookup.
        if message.__class__ is dict and message.get("type") == "websocket.receive":
            try:
                method: Any = self.websocket_receive
                ours = method.__func__ is _WEBSOCKET_RECEIVE
            except AttributeError:  # not a method: whatever it is decides
                ours = False
            if ours:
                return self._receive_frame(message)
        return super()._start_handler(message)

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
            message: Message = {"type": "websocket.send", "text": text_data}
        else:
            message = send_event(text_data, bytes_data)
        if (
            self._connection_state is _CONNECTED
            and self.base_send is self._edge_send
            and self._server_send is not None
        ):
            # What _tracked_send does for a frame on an open socket, inline.
            try:
                await self._server_send(message)
            except OSError:
                self._send_failed()
        else:
            await self.base_send(message)
        if close:
            await self.close(close)

    async def close(
        self, code: int | bool | None = None, reason: str | None = None
    ) -> None:
        """Close the socket (before accept: refuse the handshake with 403)."""
        await self.base_send(close_event(code, reason))

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave ``groups``, call ``disconnect(code)``, stop the consumer."""
        self._handle_disconnect()
        for group in self.groups or ():
            await self._groups_layer().group_discard(group, self.channel_name)
        await self.disconnect(message.get("code", 1005))
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        """Called once when the connection ends, whatever ended it."""


_WEBSOCKET_RECEIVE = AsyncWebsocketConsumer.websocket_receive


class AsyncJsonWebsocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` that decodes and encodes JSON text frames."""

    async def receive(
        self,
        text_data: str | None = None,
        bytes_data: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        if text_data is None:
            await self.base_send(FailureClose(CLOSE_INVALID_PAYLOAD))
            raise ValueError(NO_JSON_TEXT)
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            await self.base_send(FailureClose(CLOSE_INVALID_PAYLOAD))
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
