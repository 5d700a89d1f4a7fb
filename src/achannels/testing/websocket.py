"""Test a WebSocket application without a server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import InvalidFrame, InvalidFrameType
from .._types import ASGIApp, Message, Scope
from ._scope import normalize_headers, split_path
from .application import ApplicationCommunicator

__all__ = ["WebsocketCommunicator"]


class WebsocketCommunicator(ApplicationCommunicator):
    """Open a WebSocket connection to ``application`` and exchange frames.

    Builds the scope as Channels 4.3 does (``type``, ``path`` decoded,
    ``query_string``, ``headers``, ``subprotocols``, ``spec_version`` when
    given), plus ``raw_path``; header names are lowercased bytes as servers
    deliver them. Like Channels, ``client`` and ``server`` are not set.
    ``extensions`` (keyword) is added as ``scope["extensions"]``, e.g.
    ``{"websocket.http.response": {}}`` to let the application deny the
    handshake with an HTTP response.

    After ``connect()``: ``response_headers`` holds the accept message's
    headers; after a denial by HTTP response, ``http_response`` holds
    ``{"status": int, "headers": list, "body": bytes}``.
    """

    def __init__(
        self,
        application: ASGIApp,
        path: str,
        headers: Iterable[Sequence[str | bytes]] | None = None,
        subprotocols: Iterable[str] | None = None,
        spec_version: str | None = None,
        *,
        extensions: dict[str, Any] | None = None,
    ):
        scope: Scope = {
            "type": "websocket",
            **split_path(path),
            "headers": normalize_headers(headers),
            "subprotocols": list(subprotocols or ()),
        }
        if spec_version:
            scope["spec_version"] = spec_version
        if extensions is not None:
            scope["extensions"] = extensions
        super().__init__(application, scope)
        self.response_headers: list[Any] | None = None
        self.http_response: dict[str, Any] | None = None

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        """Send ``websocket.connect``; return ``(True, subprotocol)`` on accept.

        On a close before accept return ``(False, code)`` (1000 when the close
        has no code); nothing more is sent, as in Channels, so the
        application still waits for its ``websocket.disconnect``
        (``disconnect()`` sends it). On an HTTP denial return
        ``(False, status)`` and keep the response in ``http_response``; that
        application is then told ``websocket.disconnect`` (code 1006, as
        uvicorn does) and given ``timeout`` seconds to end. Raises
        ``asyncio.TimeoutError`` if the application answers nothing within
        ``timeout``, its exception if it fails, ``AssertionError`` if it
        answers with another message type.
        """
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        kind = response["type"]
        if kind == "websocket.accept":
            self.response_headers = response.get("headers", [])
            return True, response.get("subprotocol")
        if kind == "websocket.close":
            return (False, response.get("code", 1000))
        if kind != "websocket.http.response.start":
            raise AssertionError(
                "Expected 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', but was {kind!r}"
            )
        # Beyond Channels (whose connect() fails an assert here): an HTTP
        # denial ends the handshake, and the server tells the application so.
        self.http_response = await self._receive_http_response(response, timeout)
        await self.send_input({"type": "websocket.disconnect", "code": 1006})
        await self._wait_ended(timeout)
        return (False, self.http_response["status"])

    async def _wait_ended(self, timeout: float) -> None:
        """Give the application up to ``timeout`` s to end; raise what it
        raised if it did."""
        future = self.future
        await asyncio.wait({future}, timeout=timeout)
        if future.done() and not future.cancelled():
            future.result()

    async def _receive_http_response(
        self, start: Message, timeout: float
    ) -> dict[str, Any]:
        body = bytearray()
        while True:
            chunk = await self.receive_output(timeout)
            if chunk["type"] != "websocket.http.response.body":
                raise AssertionError(
                    "Expected 'websocket.http.response.body', "
                    f"but was {chunk['type']!r}"
                )
            body += chunk.get("body", b"")
            if not chunk.get("more_body", False):
                break
        return {
            "status": start["status"],
            "headers": list(start.get("headers", [])),
            "body": bytes(body),
        }

    async def send_to(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        """Send one frame: exactly one of ``text_data`` or ``bytes_data``.

        Empty data is a frame too (``send_to(text_data="")``). Raises
        ``ValueError`` for none or both, ``TypeError`` for a wrong type; both
        are also ``AssertionError`` (Channels asserts).
        """
        if (text_data is None) == (bytes_data is None):
            raise InvalidFrame("You must supply exactly one of text_data or bytes_data")
        if text_data is not None:
            if not isinstance(text_data, str):
                raise InvalidFrameType(
                    f"text_data must be a str, got {type(text_data)}"
                )
            await self.send_input({"type": "websocket.receive", "text": text_data})
        else:
            if not isinstance(bytes_data, bytes):
                raise InvalidFrameType(
                    f"bytes_data must be bytes, got {type(bytes_data)}"
                )
            await self.send_input({"type": "websocket.receive", "bytes": bytes_data})

    async def send_json_to(self, data: Any) -> None:
        """Send ``data`` encoded with ``json.dumps`` as a text frame."""
        await self.send_to(text_data=json.dumps(data))

    async def receive_from(self, timeout: float = 1) -> str | bytes:
        """Return the next frame the application sent: ``str`` or ``bytes``.

        Raises ``asyncio.TimeoutError`` after ``timeout`` seconds without
        output, and ``AssertionError`` if the next message is not a
        ``websocket.send`` carrying exactly one of text or bytes (for
        instance when the application closed instead).
        """
        response = await self.receive_output(timeout)
        if response["type"] != "websocket.send":
            raise AssertionError(
                f"Expected type 'websocket.send', but was {response['type']!r}"
            )
        text = response.get("text")
        data = response.get("bytes")
        if (text is None) == (data is None):
            raise AssertionError(
                f"The response needs exactly one of 'text' or 'bytes': {response!r}"
            )
        if text is not None:
            if not isinstance(text, str):
                raise AssertionError(
                    f"Text frame payload is not str, it is {type(text)}"
                )
            return text
        if not isinstance(data, bytes):
            raise AssertionError(
                f"Binary frame payload is not bytes, it is {type(data)}"
            )
        return data

    async def receive_json_from(self, timeout: float = 1) -> Any:
        """Return the next text frame decoded with ``json.loads``.

        Raises as ``receive_from``, and ``AssertionError`` for a binary frame.
        """
        payload = await self.receive_from(timeout)
        if not isinstance(payload, str):
            raise AssertionError(
                f"JSON data is not a text frame, it is {type(payload)}"
            )
        return json.loads(payload)

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        """Send ``websocket.disconnect`` with ``code`` and wait for the end.

        Raises ``asyncio.TimeoutError`` (after cancelling the application) if
        it does not return within ``timeout``, and the application's
        exception if it failed.
        """
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)
