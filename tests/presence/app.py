"""The application the presence tests serve (on one layer chosen by env).

``PRESENCE_LAYER`` is ``memory``, ``core`` or ``pubsub``; the Redis layers
use ``PRESENCE_REDIS_URL``, ``PRESENCE_PREFIX`` and ``PRESENCE_TTL``.

``ws/room/<room>/?key=<key>`` tracks the connection in ``room`` and sends
``{"type": "state", "members": ...}``; every ``presence.diff`` is forwarded
as it is. A text frame ``{"meta": ...}`` updates the meta, ``"crash"``
raises in the handler, ``"list"`` sends the list again.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import parse_qs

from achannels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path

_KIND = os.environ.get("PRESENCE_LAYER", "memory")
_BACKENDS = {
    "memory": "achannels.layers.InMemoryChannelLayer",
    "core": "achannels.layers.redis.RedisChannelLayer",
    "pubsub": "achannels.layers.redis.RedisPubSubChannelLayer",
}
_CONFIG: dict[str, Any] = {}
if _KIND != "memory":
    _CONFIG = {
        "hosts": [os.environ["PRESENCE_REDIS_URL"]],
        "prefix": os.environ["PRESENCE_PREFIX"],
        "presence_ttl": float(os.environ.get("PRESENCE_TTL", "10")),
    }
channel_layers.configure({"default": {"BACKEND": _BACKENDS[_KIND], "CONFIG": _CONFIG}})


class RoomConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        self.room = "room." + self.scope["url_route"]["kwargs"]["room"]
        query = parse_qs(self.scope["query_string"].decode())
        key = query["key"][0]
        await self.presence.track(self.room, key=key, meta={"pid": os.getpid()})
        await self.send_state()

    async def send_state(self) -> None:
        members = await self.presence.list(self.room)
        await self.send_json({"type": "state", "members": members, "pid": os.getpid()})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content == "crash":
            raise RuntimeError("crash requested by the test")
        if content == "list":
            await self.send_state()
        elif isinstance(content, dict) and "meta" in content:
            await self.presence.update(self.room, content["meta"])

    async def presence_diff(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


class SyncRoomConsumer(WebsocketConsumer):
    """A sync consumer tracking through async_to_sync."""

    def connect(self) -> None:
        from asgiref.sync import async_to_sync

        self.accept()
        self.room = "room." + self.scope["url_route"]["kwargs"]["room"]
        key = parse_qs(self.scope["query_string"].decode())["key"][0]
        async_to_sync(self.presence.track)(self.room, key, {"sync": True})
        members = async_to_sync(self.presence.list)(self.room)
        self.send(text_data=json.dumps({"type": "state", "members": members}))

    def presence_diff(self, event: dict[str, Any]) -> None:
        self.send(text_data=json.dumps(event))


print(f"presence app on {_KIND}", file=sys.stderr)

application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/room/<str:room>/", RoomConsumer.as_asgi()),
                path("ws/sync-room/<str:room>/", SyncRoomConsumer.as_asgi()),
            ]
        )
    }
)
