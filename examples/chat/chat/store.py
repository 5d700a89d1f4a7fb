"""Room history and the names of rooms, in this process or in Redis.

Who is in a room is the channel layer's presence (see ``consumers.py``);
this store keeps what presence does not: the last messages of each room,
and which rooms exist, for the lobby. With the in-memory channel layer every
connection lives in one process, so a dict is enough. With ``REDIS_URL``
set, connections of one room may live in different worker processes:
history is a capped Redis list per room and the rooms a Redis set, so every
worker sees the same rooms.
"""

from __future__ import annotations

import json
from collections import deque
from functools import cache
from typing import Any, Protocol

from django.conf import settings

__all__ = ["RoomStore", "get_store"]

# History of an idle room expires after a day in Redis.
REDIS_TTL_SECONDS = 24 * 3600


class RoomStore(Protocol):
    async def add_room(self, room: str) -> None: ...
    async def forget_room(self, room: str) -> None: ...
    async def rooms(self) -> list[str]: ...
    async def remember(self, room: str, message: dict[str, Any]) -> None: ...
    async def history(self, room: str) -> list[dict[str, Any]]: ...


class MemoryStore:
    """History and rooms in this process (the in-memory layer's partner)."""

    def __init__(self, history_size: int) -> None:
        self._history_size = history_size
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._rooms: set[str] = set()

    async def add_room(self, room: str) -> None:
        self._rooms.add(room)

    async def forget_room(self, room: str) -> None:
        self._rooms.discard(room)

    async def rooms(self) -> list[str]:
        return sorted(self._rooms)

    async def remember(self, room: str, message: dict[str, Any]) -> None:
        history = self._history.get(room)
        if history is None:
            history = self._history[room] = deque(maxlen=self._history_size)
        history.append(message)

    async def history(self, room: str) -> list[dict[str, Any]]:
        return list(self._history.get(room, ()))


class RedisStore:
    """History and rooms in Redis, shared by every worker process."""

    def __init__(self, url: str, prefix: str, history_size: int) -> None:
        from redis.asyncio import Redis

        # One client per process: uvicorn and gunicorn workers each run one
        # event loop, and redis-py connects lazily inside it.
        self._redis = Redis.from_url(url, decode_responses=True)
        self._prefix = f"{prefix}:chat"
        self._history_size = history_size

    def _key(self, kind: str, room: str = "") -> str:
        return f"{self._prefix}:{kind}:{room}" if room else f"{self._prefix}:{kind}"

    async def add_room(self, room: str) -> None:
        await self._redis.sadd(self._key("rooms"), room)

    async def forget_room(self, room: str) -> None:
        await self._redis.srem(self._key("rooms"), room)

    async def rooms(self) -> list[str]:
        return sorted(await self._redis.smembers(self._key("rooms")))

    async def remember(self, room: str, message: dict[str, Any]) -> None:
        key = self._key("history", room)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(message))
            pipe.ltrim(key, -self._history_size, -1)
            pipe.expire(key, REDIS_TTL_SECONDS)
            await pipe.execute()

    async def history(self, room: str) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(self._key("history", room), 0, -1)
        return [json.loads(item) for item in raw]


@cache
def get_store() -> RoomStore:
    """The store for this process: Redis when ``REDIS_URL`` is set."""
    size = int(getattr(settings, "CHAT_HISTORY_SIZE", 50))
    if settings.REDIS_URL:
        return RedisStore(settings.REDIS_URL, settings.CHAT_REDIS_PREFIX, size)
    return MemoryStore(size)
