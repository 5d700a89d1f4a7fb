"""One set of consumers, served by achannels or by Channels.

The consumer code below is written once against the Channels API and bound
to either framework by ``build()``, so a difference in the measurements is a
difference in the framework, never in the application. Both use their
framework's in-memory channel layer, as a single-process deployment would,
unless the environment names a Redis layer (``layer_from_env``): then several
server processes share rooms through Redis, as a production deployment does.

Routes:

- ``/echo/``: echoes every frame (text or bytes) back to its sender;
- ``/room/``: joins the group ``room``; any frame it receives is broadcast to
  the whole group with ``group_send``, and each member sends it on to its
  client;
- ``/rooms/<name>/``: the same in the group ``<name>`` (many small rooms).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["LAYER_ENV", "PREFIX_ENV", "REDIS_ENV", "ROOM", "build", "layer_from_env"]

ROOM = "room"

#: The layer the servers use: ``memory`` (default), ``redis`` (the sorted-set
#: core layer) or ``redis-pubsub``; the Redis URL and a key prefix private to
#: one benchmark run come with it.
LAYER_ENV = "ACHANNELS_BENCH_LAYER"
REDIS_ENV = "ACHANNELS_BENCH_LAYER_URL"
PREFIX_ENV = "ACHANNELS_BENCH_LAYER_PREFIX"

_BACKENDS = {
    ("achannels", "memory"): "achannels.layers.InMemoryChannelLayer",
    ("channels", "memory"): "channels.layers.InMemoryChannelLayer",
    ("achannels", "redis"): "achannels.layers.redis.RedisChannelLayer",
    ("channels", "redis"): "channels_redis.core.RedisChannelLayer",
    ("achannels", "redis-pubsub"): "achannels.layers.redis.RedisPubSubChannelLayer",
    ("channels", "redis-pubsub"): "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def layer_from_env() -> str:
    """The layer kind the environment asks for (``LAYER_ENV``)."""
    return os.environ.get(LAYER_ENV, "memory")


#: channels_redis 4.3's core layer on redis-py 8, which changed defaults it
#: relies on: every read now times out after 5 s (``socket_timeout``),
#: exactly the 5 s its receive blocks in ``BZPOPMIN`` (``brpop_timeout``), so
#: on an idle process the receiving consumer dies with "Timeout reading from
#: ..." (often the first to connect: a room's publisher); a pool holds at most
#: 100 connections (``max_connections``), so a thousand clients leaving at
#: once fail their ``group_discard`` with "Too many connections" and stay in
#: the group; and connecting times out after 5 s, which those thousand
#: connections opened at once take on a busy core. The redis-py 5 defaults
#: it was written for (no timeouts, no bound) restore it.
CHANNELS_REDIS_HOST = {
    "socket_timeout": None,
    "socket_connect_timeout": None,
    "max_connections": 2**31 - 1,
}


def _layers(framework: str, layer: str) -> dict[str, Any]:
    backend: dict[str, Any] = {"BACKEND": _BACKENDS[framework, layer]}
    if layer != "memory":
        host: Any = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")
        if framework == "channels" and layer == "redis":
            host = {"address": host, **CHANNELS_REDIS_HOST}
        backend["CONFIG"] = {
            "hosts": [host],
            "prefix": os.environ.get(PREFIX_ENV, "asgi"),
        }
    return {"default": backend}


def build(framework: str, layer: str = "memory") -> Any:
    """The ASGI application for ``framework`` (``"achannels"`` or
    ``"channels"``) on the channel layer ``layer`` (``"memory"``,
    ``"redis"`` or ``"redis-pubsub"``); ``ValueError`` for anything else."""
    if framework not in ("achannels", "channels"):
        raise ValueError(f"unknown framework {framework!r}: achannels or channels")
    if (framework, layer) not in _BACKENDS:
        raise ValueError(f"unknown layer {layer!r}: memory, redis or redis-pubsub")
    if framework == "achannels":
        from achannels.layers import channel_layers
        from achannels.routing import path

        channel_layers.configure(_layers(framework, layer))
    elif framework == "channels":
        from django.conf import settings
        from django.urls import path  # type: ignore[assignment]

        import django

        if not settings.configured:
            settings.configure(
                SECRET_KEY="benchmark-only",
                INSTALLED_APPS=["channels"],
                DATABASES={},
                CHANNEL_LAYERS=_layers(framework, layer),
            )
            django.setup()
    # The same names from either framework; Any, as the two differ in types.
    websocket: Any = importlib.import_module(f"{framework}.generic.websocket")
    routing: Any = importlib.import_module(f"{framework}.routing")

    # ---- the consumer code both frameworks run -------------------------------

    class EchoConsumer(websocket.AsyncWebsocketConsumer):  # type: ignore[misc]
        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.send(text_data=text_data, bytes_data=bytes_data)

    class RoomConsumer(websocket.AsyncWebsocketConsumer):  # type: ignore[misc]
        groups = [ROOM]

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.channel_layer.group_send(
                ROOM, {"type": "room.message", "text": text_data}
            )

        async def room_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    class SmallRoomConsumer(RoomConsumer):
        groups: list[str] = []

        async def connect(self) -> None:
            self.room = self.scope["url_route"]["kwargs"]["name"]
            await self.channel_layer.group_add(self.room, self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(self.room, self.channel_name)

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            await self.channel_layer.group_send(
                self.room, {"type": "room.message", "text": text_data}
            )

    # ---------------------------------------------------------------------------

    return routing.ProtocolTypeRouter(
        {
            "websocket": routing.URLRouter(
                [
                    path("echo/", EchoConsumer.as_asgi()),
                    path("room/", RoomConsumer.as_asgi()),
                    path("rooms/<str:name>/", SmallRoomConsumer.as_asgi()),
                ]
            )
        }
    )
