"""Room history and presence, in this process or in Redis.

With the in-memory channel layer every connection lives in one process, so a
dict is enough. With ``REDIS_URL`` set, connections of one room may live in
different worker processes: history is a capped Redis list per room and
presence a Redis hash per room (layer channel name -> display name), so every
worker sees the same room.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from django.conf import settings

__all__ = ["Joined", "Left", "RoomStore", "get_store"]

# Presence and history of an idle room expire after a day in Redis; a worker
# killed without running disconnect() leaves entries that go away with it.
REDIS_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Joined:
    """What a join changed: whether the name is new in the room, and who is in."""

    first: bool
    members: list[str]


@dataclass(frozen=True)
class Left:
    """What a leave changed: whether the name is gone, and who is still in."""

    last: bool
    members: list[str]


class RoomStore(Protocol):
    async def join(self, room: str, channel: str, name: str) -> Joined: ...
    async def leave(self, room: str, channel: str) -> Left: ...
    async def members(self, room: str) -> list[str]: ...
    async def remember(self, room: str, message: dict[str, Any]) -> None: ...
    async def history(self, room: str) -> list[dict[str, Any]]: ...
    async def rooms(self) -> dict[str, int]: ...


def _distinct(names: list[str]) -> list[str]:
    # One entry per person, however many tabs they have open.
    return sorted(set(names), key=str.casefold)


class MemoryStore:
    """History and presence in this process (the in-memory layer's partner)."""

    def __init__(self, history_size: int) -> None:
        self._history_size = history_size
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._presence: dict[str, dict[str, str]] = {}

    async def join(self, room: str, channel: str, name: str) -> Joined:
        present = self._presence.setdefault(room, {})
        first = name not in present.values()
        present[channel] = name
        return Joined(first, _distinct(list(present.values())))

    async def leave(self, room: str, channel: str) -> Left:
        present = self._presence.get(room, {})
        name = present.pop(channel, None)
        if not present:
            self._presence.pop(room, None)
        last = name is not None and name not in present.values()
        return Left(last, _distinct(list(present.values())))

    async def members(self, room: str) -> list[str]:
        return _distinct(list(self._presence.get(room, {}).values()))

    async def remember(self, room: str, message: dict[str, Any]) -> None:
        history = self._history.get(room)
        if history is None:
            history = self._history[room] = deque(maxlen=self._history_size)
        history.append(message)

    async def history(self, room: str) -> list[dict[str, Any]]:
        return list(self._history.get(room, ()))

    async def rooms(self) -> dict[str, int]:
        return {
            room: len(set(present.values())) for room, present in self._presence.items()
        }


class RedisStore:
    """History and presence in Redis, shared by every worker process."""

    def __init__(self, url: str, prefix: str, history_size: int) -> None:
        from redis.asyncio import Redis

        # One client per process: uvicorn and gunicorn workers each run one
        # event loop, and redis-py connects lazily inside it.
        self._redis = Redis.from_url(url, decode_responses=True)
        self._prefix = f"{prefix}:chat"
        self._history_size = history_size

    def _key(self, kind: str, room: str = "") -> str:
        return f"{self._prefix}:{kind}:{room}" if room else f"{self._prefix}:{kind}"

    async def join(self, room: str, channel: str, name: str) -> Joined:
        key = self._key("presence", room)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hvals(key)
            pipe.hset(key, channel, name)
            pipe.expire(key, REDIS_TTL_SECONDS)
            pipe.sadd(self._key("rooms"), room)
            before, *_ = await pipe.execute()
        return Joined(name not in before, _distinct([*before, name]))

    async def leave(self, room: str, channel: str) -> Left:
        key = self._key("presence", room)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(key, channel)
            pipe.hdel(key, channel)
            pipe.hvals(key)
            name, _, after = await pipe.execute()
        if not after:
            await self._redis.srem(self._key("rooms"), room)
        return Left(name is not None and name not in after, _distinct(after))

    async def members(self, room: str) -> list[str]:
        return _distinct(await self._redis.hvals(self._key("presence", room)))

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

    async def rooms(self) -> dict[str, int]:
        names = sorted(await self._redis.smembers(self._key("rooms")))
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in names:
                pipe.hvals(self._key("presence", room))
            present = await pipe.execute()
        return {
            room: len(set(values))
            for room, values in zip(names, present, strict=True)
            if values
        }


@cache
def get_store() -> RoomStore:
    """The store for this process: Redis when ``REDIS_URL`` is set."""
    size = int(getattr(settings, "CHAT_HISTORY_SIZE", 50))
    if settings.REDIS_URL:
        return RedisStore(settings.REDIS_URL, settings.CHAT_REDIS_PREFIX, size)
    return MemoryStore(size)
