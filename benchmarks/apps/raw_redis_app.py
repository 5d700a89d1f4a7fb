"""The hand-written ASGI app of the multi-process scenarios: rooms shared
between server processes through plain Redis pub/sub.

What a developer would write without a framework: every server process
holds one subscriber connection (redis-py's asyncio ``PubSub``, with
hiredis), subscribes to a Redis channel per room the first time one of its
clients joins it, and on a message calls the ``send`` of each of its local
members in turn. A received WebSocket frame is ``PUBLISH``ed to the room's
channel. Routes as in ``consumers.py``: ``/room/`` (the room ``room``),
``/rooms/<name>/`` and ``/echo/``. Serve it as
``benchmarks.apps.raw_redis_app:app`` with the Redis URL and key prefix of
``consumers.REDIS_ENV`` / ``consumers.PREFIX_ENV``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.apps.consumers import PREFIX_ENV, REDIS_ENV, ROOM
from benchmarks.apps.raw_app import app as local_app

__all__ = ["app"]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Rooms:
    """This process's members of every room, and its one subscription."""

    def __init__(self) -> None:
        import redis.asyncio as aioredis

        url = os.environ.get(REDIS_ENV, "redis://127.0.0.1:6379/0")
        self.prefix = os.environ.get(PREFIX_ENV, "raw") + ":room:"
        self.redis = aioredis.Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.members: dict[bytes, set[Send]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.pending: dict[bytes, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()

    def key(self, room: str) -> bytes:
        return (self.prefix + room).encode()

    async def join(self, room: str, send: Send) -> None:
        key = self.key(room)
        async with self.lock:
            if key not in self.members:
                self.members[key] = set()
                confirmed = asyncio.get_running_loop().create_future()
                self.pending[key] = confirmed
                await self.pubsub.subscribe(key)
                if self.reader is None:
                    self.reader = asyncio.create_task(self.read())
                # The subscription is confirmed before anyone may publish.
                await asyncio.wait_for(confirmed, 10.0)
        self.members[key].add(send)

    def leave(self, room: str, send: Send) -> None:
        self.members.get(self.key(room), set()).discard(send)

    async def publish(self, room: str, text: str | None) -> None:
        await self.redis.publish(self.key(room), text or "")

    async def read(self) -> None:
        while True:
            reply = await self.pubsub.get_message(timeout=None)
            if not reply:
                continue
            if reply["type"] == "subscribe":
                confirmed = self.pending.pop(reply["channel"], None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                continue
            if reply["type"] != "message":
                continue
            data = reply["data"]
            message = {"type": "websocket.send", "text": data.decode()}
            for send in list(self.members.get(reply["channel"], ())):
                await send(message)


_rooms: Rooms | None = None


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    global _rooms
    path = scope.get("path", "")
    room = None
    if scope["type"] == "websocket":
        if path == "/room/":
            room = ROOM
        elif path.startswith("/rooms/"):
            room = path.split("/")[2]
    if room is None:
        await local_app(scope, receive, send)
        return
    if _rooms is None:
        _rooms = Rooms()
    rooms = _rooms
    try:
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "websocket.receive":
                await rooms.publish(room, event.get("text"))
            elif kind == "websocket.connect":
                await rooms.join(room, send)
                await send({"type": "websocket.accept"})
            else:
                return
    finally:
        rooms.leave(room, send)
