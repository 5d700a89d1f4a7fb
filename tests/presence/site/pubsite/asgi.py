"""HTTP to Django (sync views run in a thread), WebSockets to a listener."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pubsite.settings")
django_app = get_asgi_application()

from achannels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from achannels.routing import ProtocolTypeRouter, URLRouter, path  # noqa: E402


class Listener(AsyncJsonWebsocketConsumer):
    """Joins the group in the URL and forwards what is published to it."""

    async def connect(self) -> None:
        self.group = self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "ready"})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def pub_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": URLRouter([path("ws/listen/<str:group>/", Listener.as_asgi())]),
    }
)
