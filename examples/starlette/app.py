"""achannels consumers inside a Starlette app, next to Starlette's own routes.

Run it::

    uvicorn --app-dir examples/starlette app:app --port 8002

- ``GET /`` and ``GET /health`` are ordinary Starlette endpoints;
- ``POST /rooms/{room}/notify`` (a Starlette endpoint) pushes a JSON body to
  everyone in the room through the channel layer;
- ``ws://.../ws/rooms/{room}/`` is an achannels consumer, mounted with an
  achannels ``URLRouter`` under Starlette's ``Mount("/ws")``.

The same works in FastAPI: ``app.mount("/ws", websocket_router)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route

from achannels.generic.websocket import AsyncJsonWebsocketConsumer
from achannels.layers import channel_layers, get_channel_layer
from achannels.routing import URLRouter, path

channel_layers.configure(
    {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}
)


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """Joins the room's group; relays what members and the HTTP API send."""

    async def connect(self) -> None:
        self.group = f"room.{self.scope['url_route']['kwargs']['room']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.channel_layer.group_send(
            self.group, {"type": "room.event", "payload": content}
        )

    async def room_event(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)


# Starlette's Mount puts "/ws" into scope["root_path"]; URLRouter routes on
# what follows it.
websocket_router = URLRouter([path("rooms/<slug:room>/", RoomConsumer.as_asgi())])


async def homepage(request: Request) -> HTMLResponse:
    return HTMLResponse(
        "<h1>Starlette + achannels</h1>"
        "<p>WebSocket rooms live at <code>/ws/rooms/&lt;room&gt;/</code>.</p>"
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def notify(request: Request) -> JSONResponse:
    room = request.path_params["room"]
    payload = await request.json()
    await get_channel_layer().group_send(
        f"room.{room}", {"type": "room.event", "payload": payload}
    )
    return JSONResponse({"sent": True}, status_code=202)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    # Starlette owns the lifespan here, so close the layers ourselves (an
    # achannels ProtocolTypeRouter would do it for us).
    await channel_layers.aclose()


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/health", health),
        Route("/rooms/{room:str}/notify", notify, methods=["POST"]),
        Mount("/ws", app=websocket_router),
    ],
    lifespan=lifespan,
)
