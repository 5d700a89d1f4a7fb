"""The application the real-server tests serve: one route per behaviour."""

from __future__ import annotations

import asyncio
import logging
import sys

from achannels.consumer import AsyncConsumer, concurrent
from achannels.exceptions import StopConsumer
from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path

channel_layers.configure(
    {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
)

# The tests read what consumers report from the server's output. Only this
# logger prints there, so server logs are not duplicated through the root.
report = logging.getLogger("core_app")
report.setLevel(logging.INFO)
report.addHandler(logging.StreamHandler(sys.stdout))
report.propagate = False

SUPPORTED_SUBPROTOCOLS = ("chat.v2", "chat.v1")


class EchoConsumer(AsyncWebsocketConsumer):
    """Echoes frames; picks the first supported subprotocol; closes on request."""

    async def connect(self) -> None:
        offered = self.scope.get("subprotocols") or []
        chosen = next((p for p in offered if p in SUPPORTED_SUBPROTOCOLS), None)
        await self.accept(chosen)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data is not None and text_data.startswith("close "):
            _, code, reason = text_data.split(" ", 2)
            await self.close(int(code), reason)
        elif text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code: int) -> None:
        report.info("core_app echo disconnect code=%s", code)


class SyncEchoConsumer(WebsocketConsumer):
    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        self.send(text_data=text_data, bytes_data=bytes_data)


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """Joins the room from the URL; broadcasts what members say."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)  # type: ignore[union-attr]
        await self.accept()
        await self.send_json(
            {"joined": self.room, "kwargs": self.scope["url_route"]["kwargs"]}
        )

    async def receive_json(self, content: object, **kwargs: object) -> None:
        await self.channel_layer.group_send(  # type: ignore[union-attr]
            self.room, {"type": "room.message", "text": content}
        )

    async def room_message(self, event: dict[str, object]) -> None:
        await self.send_json({"message": event["text"]})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room, self.channel_name)  # type: ignore[union-attr]


class DenyConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close()


class DenyWithResponseConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.deny(401, b"who are you?")


class BoomConsumer(AsyncWebsocketConsumer):
    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        raise RuntimeError(f"boom: {text_data}")

    async def disconnect(self, code: int) -> None:
        report.info("core_app boom disconnect code=%s", code)


class SlowJobConsumer(AsyncWebsocketConsumer):
    """'slow' starts a @concurrent job that answers after 'release'; any
    other frame is echoed at once, even while the job is running."""

    async def connect(self) -> None:
        self.released = asyncio.Event()
        await self.accept()

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if text_data == "slow":
            await self.dispatch({"type": "slow.job"})
        elif text_data == "release":
            self.released.set()
        else:
            await self.send(text_data=f"fast {text_data}")

    @concurrent
    async def slow_job(self, event: dict[str, object]) -> None:
        await self.released.wait()
        await self.send(text_data="slow done")


class StreamConsumer(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_headers(headers=[(b"content-type", b"text/plain")])
        for i in range(3):
            await self.send_body(f"chunk {i}\n".encode(), more_body=True)
        await self.send_body(b"done\n")


class HelloConsumer(AsyncConsumer):
    """A bare consumer answering plain HTTP."""

    async def http_request(self, message: dict[str, object]) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": []})
        await self.send({"type": "http.response.body", "body": b"hello"})
        raise StopConsumer()


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/echo/", EchoConsumer.as_asgi()),
                path("ws/sync-echo/", SyncEchoConsumer.as_asgi()),
                path("ws/room/<str:room>/<int:seat>/", RoomConsumer.as_asgi()),
                path("ws/deny/", DenyConsumer.as_asgi()),
                path("ws/deny-http/", DenyWithResponseConsumer.as_asgi()),
                path("ws/boom/", BoomConsumer.as_asgi()),
                path("ws/slow-job/", SlowJobConsumer.as_asgi()),
            ]
        ),
        "http": URLRouter(
            [
                path("stream/", StreamConsumer.as_asgi()),
                path("hello/", HelloConsumer.as_asgi()),
            ]
        ),
    }
)
