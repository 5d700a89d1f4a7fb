"""The smallest achannels app: a page and a WebSocket that echoes it.

Run it with ``make run`` (or ``uvicorn --app-dir examples/echo app:application``)
and open http://127.0.0.1:8000/. No Django, no channel layer needed.
"""

from __future__ import annotations

from pathlib import Path

from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.routing import ProtocolTypeRouter, URLRouter, path

PAGE = (Path(__file__).parent / "index.html").read_bytes()


class PageConsumer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(
            200, PAGE, headers=[(b"content-type", b"text/html; charset=utf-8")]
        )


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("", PageConsumer.as_asgi())]),
        "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
    }
)
