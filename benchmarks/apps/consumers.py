"""One set of consumers, served by achannels or by Channels.

The consumer code below is written once against the Channels API and bound
to either framework by ``build()``, so a difference in the measurements is a
difference in the framework, never in the application. Both use their
framework's in-memory channel layer, as a single-process deployment would.

Routes:

- ``/echo/``: echoes every frame (text or bytes) back to its sender;
- ``/room/``: joins the group ``room``; any frame it receives is broadcast to
  the whole group with ``group_send``, and each member sends it on to its
  client.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ROOM", "build"]

ROOM = "room"


def build(framework: str) -> Any:
    """The ASGI application for ``framework`` (``"achannels"`` or
    ``"channels"``); ``ValueError`` for anything else."""
    if framework == "achannels":
        from achannels.layers import channel_layers
        from achannels.routing import path

        channel_layers.configure(
            {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
        )
    elif framework == "channels":
        from django.conf import settings
        from django.urls import path  # type: ignore[assignment]

        import django

        if not settings.configured:
            settings.configure(
                SECRET_KEY="benchmark-only",
                INSTALLED_APPS=["channels"],
                DATABASES={},
                CHANNEL_LAYERS={
                    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
                },
            )
            django.setup()
    else:
        raise ValueError(f"unknown framework {framework!r}: achannels or channels")
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

    # ---------------------------------------------------------------------------

    return routing.ProtocolTypeRouter(
        {
            "websocket": routing.URLRouter(
                [
                    path("echo/", EchoConsumer.as_asgi()),
                    path("room/", RoomConsumer.as_asgi()),
                ]
            )
        }
    )
