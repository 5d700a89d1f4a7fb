"""The application test_cluster_server.py serves: members of one group on a
Redis Cluster.

Environment: ``CLUSTER_APP_HOSTS`` (the layer's ``hosts`` as JSON),
``CLUSTER_APP_PREFIX``, ``CLUSTER_APP_LAYER`` (``core`` or ``pubsub``).

A client of ``ws/room/`` joins group ``room``; each text frame it sends goes
to the whole group, and the frame ``unavailable`` comes back instead when
the layer raised ConnectionError (a failover in progress).
"""

from __future__ import annotations

import json
import os
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path

BACKENDS = {
    "core": "achannels.layers.redis.RedisChannelLayer",
    "pubsub": "achannels.layers.redis.RedisPubSubChannelLayer",
}

channel_layers.configure(
    {
        "default": {
            "BACKEND": BACKENDS[os.environ.get("CLUSTER_APP_LAYER", "core")],
            "CONFIG": {
                "hosts": json.loads(os.environ["CLUSTER_APP_HOSTS"]),
                "prefix": os.environ.get("CLUSTER_APP_PREFIX", "asgi"),
            },
        }
    }
)


class Member(AsyncWebsocketConsumer):
    groups = ["room"]

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        assert self.channel_layer is not None
        try:
            await self.channel_layer.group_send(
                "room", {"type": "member.message", "text": text_data}
            )
        except RedisConnectionError:
            await self.send(text_data="unavailable")

    async def member_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("ws/room/", Member.as_asgi())])}
)
