"""The hand-written ASGI app: the ceiling the frameworks are measured against.

It does what the benchmark consumers do with nothing in between: ``/echo/``
sends every frame straight back, ``/room/`` keeps the ``send`` of every open
connection in a set and broadcasts a received frame by calling each of them.
Serve it as ``benchmarks.apps.raw_app:app``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["app"]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_room: set[Send] = set()


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        path = scope["path"]
        if path == "/echo/":
            await _echo(receive, send)
        elif path == "/room/":
            await _room_member(receive, send)
        else:
            await receive()
            await send({"type": "websocket.close"})
    elif kind == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _echo(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.receive":
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        else:
            return


async def _room_member(receive: Receive, send: Send) -> None:
    try:
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.receive":
                message = {"type": "websocket.send", "text": event.get("text")}
                for member in list(_room):
                    await member(message)
            elif kind == "websocket.connect":
                _room.add(send)
                await send({"type": "websocket.accept"})
            else:
                return
    finally:
        _room.discard(send)
