"""Test an HTTP application without a server."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import InvalidBody
from .._types import ASGIApp, Scope
from ._scope import normalize_headers, split_path
from .application import ApplicationCommunicator

__all__ = ["HttpCommunicator"]


class HttpCommunicator(ApplicationCommunicator):
    """Send one HTTP request to ``application`` and collect its response.

    The scope is Channels 4.3's (``type`` ``"http"``, ``http_version`` 1.1,
    ``method`` uppercased, ``path`` decoded, ``query_string``, ``headers``)
    plus ``raw_path``; header names are lowercased bytes. A body that is not
    bytes raises a ``TypeError`` that is also an ``AssertionError`` (Channels
    asserts). The request body is
    sent as one ``http.request`` message; for chunked requests drive an
    ``ApplicationCommunicator`` directly.
    """

    def __init__(
        self,
        application: ASGIApp,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Iterable[Sequence[str | bytes]] | None = None,
    ):
        if not isinstance(body, bytes):
            raise InvalidBody(f"body must be bytes, got {type(body)}")
        scope: Scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method.upper(),
            **split_path(path),
            "headers": normalize_headers(headers),
        }
        super().__init__(application, scope)
        self.body = body
        self.sent_request = False

    async def get_response(self, timeout: float = 1) -> dict[str, Any]:
        """Return ``{"status": int, "headers": list, "body": bytes}``.

        Streamed bodies (``more_body``) are joined; other keys of the
        ``http.response.start`` message (e.g. ``trailers``) are kept, as in
        Channels. As in Channels, nothing is sent after the request: the
        application is not told ``http.disconnect``. Raises
        ``asyncio.TimeoutError`` when a message takes longer than
        ``timeout``, the application's exception if it fails, and
        ``AssertionError`` for out-of-order response messages.
        """
        if not self.sent_request:
            self.sent_request = True
            await self.send_input({"type": "http.request", "body": self.body})
        start = await self.receive_output(timeout)
        if start["type"] != "http.response.start":
            raise AssertionError(
                f"Expected type 'http.response.start', but was {start['type']!r}"
            )
        body = bytearray()
        while True:
            chunk = await self.receive_output(timeout)
            if chunk["type"] != "http.response.body":
                raise AssertionError(
                    f"Expected type 'http.response.body', but was {chunk['type']!r}"
                )
            data = chunk.get("body", b"")
            if not isinstance(data, bytes):
                raise AssertionError(f"Response body is not bytes, it is {type(data)}")
            body += data
            if not chunk.get("more_body", False):
                break
        response = {key: value for key, value in start.items() if key != "type"}
        response.setdefault("headers", [])
        response["body"] = bytes(body)
        return response
