"""The newcomer mistakes of issue 13, served for real: a tutorial-style
consumer whose connect() raises before accept(), one that uses
``self.channel_layer`` with no layer configured, and routes that match
nothing."""

from __future__ import annotations

from typing import Any

from achannels.generic.websocket import AsyncJsonWebsocketConsumer
from achannels.layers import channel_layers
from achannels.routing import ProtocolTypeRouter, URLRouter, path

channel_layers.configure(
    {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
)


class FailingConnect(AsyncJsonWebsocketConsumer):
    """Raises in connect() before setting what disconnect() reads."""

    async def connect(self) -> None:
        raise RuntimeError("connect failed on purpose")

    async def disconnect(self, code: int) -> None:
        # Under the old behaviour this ran too: a second, misleading traceback.
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)  # type: ignore[attr-defined,union-attr]


class NoLayer(AsyncJsonWebsocketConsumer):
    channel_layer_alias = "unconfigured"

    async def connect(self) -> None:
        await self.channel_layer.group_add("room", self.channel_name)  # type: ignore[union-attr]
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/failing/", FailingConnect.as_asgi()),
                path("ws/no-layer/", NoLayer.as_asgi()),
            ]
        ),
        "http": URLRouter([]),
    }
)
