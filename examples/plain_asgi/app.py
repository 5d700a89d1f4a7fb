"""achannels without Django: consumers, routing, groups and a channel layer.

Run it (Django need not be installed)::

    uvicorn --app-dir examples/plain_asgi app:application --port 8001

Then, from any WebSocket client::

    websocat ws://127.0.0.1:8001/ws/rooms/lobby/     # JSON frames in and out
    curl -X POST --data 'hello from curl' http://127.0.0.1:8001/rooms/lobby/announce
    curl http://127.0.0.1:8001/rooms/lobby/          # who is in the room

Set ``REDIS_URL`` to share rooms between processes through Redis.
"""

from __future__ import annotations

import json
import os
from typing import Any

from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from achannels.layers import channel_layers, get_channel_layer
from achannels.routing import ProtocolTypeRouter, URLRouter, path

# Without Django there is no CHANNEL_LAYERS setting: configure the layers
# once, at import time, with the same dictionary.
if os.environ.get("REDIS_URL"):
    channel_layers.configure(
        {
            "default": {
                "BACKEND": "achannels.layers.redis.RedisChannelLayer",
                "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
            }
        }
    )
else:
    channel_layers.configure(
        {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
    )

# Who is in which room, in this process (enough for a demo; see the chat
# example for presence shared through Redis).
members: dict[str, set[str]] = {}


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """Everyone connected to ``ws/rooms/<room>/`` hears what anyone says."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.nick = f"guest-{self.channel_name[-6:]}"
        # group_add/group_send reach every consumer in the group, in any
        # process that shares the layer.
        await self.channel_layer.group_add(f"room.{self.room}", self.channel_name)
        members.setdefault(self.room, set()).add(self.nick)
        await self.accept()
        await self.send_json({"type": "hello", "room": self.room, "you": self.nick})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.channel_layer.group_send(
            f"room.{self.room}",
            {"type": "room.say", "from": self.nick, "text": content.get("text", "")},
        )

    async def room_say(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {"type": "say", "from": event["from"], "text": event["text"]}
        )

    async def disconnect(self, code: int) -> None:
        members.get(self.room, set()).discard(self.nick)
        await self.channel_layer.group_discard(f"room.{self.room}", self.channel_name)


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends every frame straight back."""

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data, bytes_data=bytes_data)


class AnnounceConsumer(AsyncHttpConsumer):
    """``POST /rooms/<room>/announce``: the body goes to everyone in the room."""

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] != "POST":
            await self.send_response(405, b"POST only\n", headers=[(b"allow", b"POST")])
            return
        room = self.scope["url_route"]["kwargs"]["room"]
        # Any code with the layer can talk to a group: here an HTTP request.
        await get_channel_layer().group_send(
            f"room.{room}",
            {"type": "room.say", "from": "announcer", "text": body.decode()},
        )
        await self.send_response(202, b"sent\n")


class RoomInfoConsumer(AsyncHttpConsumer):
    """``GET /rooms/<room>/``: who is connected to the room in this process."""

    async def handle(self, body: bytes) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        payload = {"room": room, "members": sorted(members.get(room, ()))}
        await self.send_response(
            200,
            json.dumps(payload).encode(),
            headers=[(b"content-type", b"application/json")],
        )


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                # A nested router: the outer route matches the prefix.
                path(
                    "rooms/<slug:room>/",
                    URLRouter(
                        [
                            path("announce", AnnounceConsumer.as_asgi()),
                            path("", RoomInfoConsumer.as_asgi()),
                        ]
                    ),
                ),
            ]
        ),
        "websocket": URLRouter(
            [
                path("ws/rooms/<slug:room>/", RoomConsumer.as_asgi()),
                path("ws/echo/", EchoConsumer.as_asgi()),
            ]
        ),
    }
)
