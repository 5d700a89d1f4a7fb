"""``AsyncHttpConsumer``: HTTP endpoints written as consumers (Channels 4.3 API).

The request body is gathered from ``http.request`` events and handed to
``handle(body)``; the response goes out with ``send_headers`` and
``send_body`` (``more_body=True`` streams it) or ``send_response`` at once.
``disconnect()`` runs once whatever ends the request: the response being
done, the client leaving, or an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._db import aclose_old_connections as aclose_old_connections
from .._errors import InvalidBody
from .._types import Message
from ..consumer import AsyncConsumer
from ..exceptions import StopConsumer

__all__ = ["AsyncHttpConsumer"]

HeadersArg = Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes] | None


class AsyncHttpConsumer(AsyncConsumer):
    """Async HTTP consumer. Subclasses implement ``handle(body)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body: list[bytes] = []
        self._disconnected = False

    async def send_headers(
        self, *, status: int = 200, headers: HeadersArg = None
    ) -> None:
        """Start the response. ``headers`` is a list of ``(name, value)``
        byte pairs or a dict. Servers send nothing until the first body."""
        if headers is None:
            header_list: list[Any] = []
        elif isinstance(headers, Mapping):
            header_list = list(headers.items())
        else:
            header_list = list(headers)
        await self.send(
            {"type": "http.response.start", "status": status, "headers": header_list}
        )

    async def send_body(self, body: bytes, *, more_body: bool = False) -> None:
        """Send a chunk of the response body; ``more_body=True`` keeps the
        response open for more chunks (streaming). A body that is not bytes
        raises ``TypeError``, also an ``AssertionError`` (Channels asserts)."""
        if not isinstance(body, bytes | bytearray | memoryview):
            raise InvalidBody(f"Body must be bytes, got {type(body).__name__}")
        await self.send(
            {"type": "http.response.body", "body": body, "more_body": more_body}
        )

    async def send_response(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Send a whole response at once (headers via ``headers=``)."""
        await self.send_headers(status=status, **kwargs)
        await self.send_body(body)

    async def handle(self, body: bytes) -> None:
        """Answer the request; ``body`` is the complete request body."""
        raise NotImplementedError(
            "Subclasses of AsyncHttpConsumer must provide a handle() method."
        )

    async def disconnect(self) -> None:
        """Called once when the request ends. Do not send from here."""

    async def http_request(self, message: Message) -> None:
        """Gather the body; once complete, call ``handle`` then finish."""
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            try:
                await self.handle(b"".join(self.body))
            finally:
                await self._disconnect_once()
            raise StopConsumer()

    async def http_disconnect(self, message: Message) -> None:
        """The client went away: clean up and stop."""
        await self._disconnect_once()
        raise StopConsumer()

    async def _disconnect_once(self) -> None:
        if not self._disconnected:
            self._disconnected = True
            await self.disconnect()
