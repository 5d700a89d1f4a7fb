"""Presence in Redis, shared by both Redis layers.

Keys (new, so hash-tagged on the room: one room's keys share a cluster
slot, and every script below touches one room only):

- ``<prefix>:presence:{<room>}``: a sorted set of the processes (nodes)
  with entries in the room, each scored by its lease deadline (ms, Redis
  clock);
- ``<prefix>:presence:{<room>}:<node>``: a hash of that node's entries in
  the room, ``ref -> packed {"k": key, "m": meta}``.

A node is one layer on one event loop (one per server process). It renews
its lease in each room it has entries in every ``presence_ttl / 3``
seconds: one script call per room, however many connections it holds
there. A node that stops renewing (SIGKILL, a frozen host) is *reaped* by
the first script that meets its lapsed lease -- a heartbeat of another node
or a ``presence_list`` -- which deletes its entries atomically and returns
them, so exactly one process announces their leave. Listing hides lapsed
entries at once, so a dead process's entries vanish within
``presence_ttl``, and its leave diff follows within one heartbeat.

A node whose own entries disappeared (a flush, a lease lapsed while its loop
was blocked, an untrack that failed) notices at its next heartbeat (the
count differs from what it holds) and writes them back, announcing the
difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from ..._types import Message
from .._presence import (
    REF,
    DiffBuffer,
    DiffWorker,
    Listing,
    Meta,
    PresenceMixin,
    group_metas,
    new_ref,
)
from ._cluster import Cluster
from ._connection import Lane
from ._hosts import consistent_hash
from ._loops import bridged
from ._scripts import Executor, Script
from .serializers import MessageSerializer

__all__ = [
    "DEFAULT_PRESENCE_TTL",
    "RedisPresence",
    "RedisPresenceMixin",
    "Target",
    "check_presence_ttl",
    "cluster_target",
    "layer_target",
    "ring_target",
]

logger = logging.getLogger("achannels.presence")

#: Seconds a process's presence entries outlive its last heartbeat.
DEFAULT_PRESENCE_TTL = 10.0
# Rooms renewed at once by one heartbeat (one connection each).
_RENEW_CONCURRENCY = 16


#: Where a room's commands run: ``target(key, room)`` returns something with
#: ``execute(*command)`` (a :class:`Lane`; a cluster node on a cluster).
Target = Callable[[str, str], Executor]


def ring_target(lanes: list[Lane]) -> Target:
    """Run a room's commands on the host its name hashes to (the layers'
    sharding over several ``hosts``)."""

    def target(key: str, room: str) -> Executor:
        return lanes[consistent_hash(room, len(lanes))]

    return target


def cluster_target(cluster: Cluster) -> Target:
    """Run a room's commands on the cluster node serving its keys (they all
    carry the room as hash tag, so they share one slot)."""

    def target(key: str, room: str) -> Executor:
        return cluster.at(key)

    return target


def layer_target(cluster: Cluster | None, lanes: list[Lane]) -> Target:
    """Where a layer's room keys live: its cluster's nodes, or its hosts."""
    return cluster_target(cluster) if cluster is not None else ring_target(lanes)


def check_presence_ttl(ttl: object) -> float:
    """Return ``ttl`` as a float; :class:`ValueError` unless it is a
    positive number of seconds."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(
            f"presence_ttl must be a positive number of seconds, got {ttl!r}"
        )
    return float(ttl)


_NOW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
"""

# Delete the entries of nodes whose lease lapsed (all but `keep`); return
# their packed values.
_REAP = """
local function reap(zkey, hprefix, now, keep)
    local removed = {}
    for _, n in ipairs(redis.call('ZRANGEBYSCORE', zkey, '-inf', now)) do
        if n ~= keep then
            local h = hprefix .. n
            local vals = redis.call('HVALS', h)
            for i = 1, #vals do removed[#removed + 1] = vals[i] end
            redis.call('DEL', h)
            redis.call('ZREM', zkey, n)
        end
    end
    return removed
end
"""

#: Add one entry of a node (replacing the one of ref ``old``, if any) and
#: renew its lease.
#: KEYS: nodes, node hash. ARGV: node, ttl ms, ref, value, old ref or ''.
PUT = Script(
    _NOW
    + """
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if ARGV[5] ~= '' then
    redis.call('HDEL', KEYS[2], ARGV[5])
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return 1
"""
)

#: Remove one entry of a node; the node leaves the room with its last one.
#: KEYS: nodes, node hash. ARGV: node, ref.
DELETE = Script(
    """
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""
)

#: Remove every entry of a node in a room.
#: KEYS: nodes, node hash. ARGV: node.
DROP = Script(
    """
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""
)

#: Reap lapsed nodes, renew this node's lease; return {own entry count,
#: reaped values}.
#: KEYS: nodes, node hash. ARGV: node, ttl ms, hash key prefix.
RENEW = Script(
    _NOW
    + _REAP
    + """
local removed = reap(KEYS[1], ARGV[3], now, ARGV[1])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return {redis.call('HLEN', KEYS[2]), removed}
"""
)

#: Replace a node's entries with the given ones; return the old values.
#: KEYS: nodes, node hash. ARGV: node, ttl ms, then ref, value pairs.
SYNC = Script(
    _NOW
    + """
local old = redis.call('HVALS', KEYS[2])
redis.call('DEL', KEYS[2])
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > 2 then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl * 2)
    redis.call('PEXPIRE', KEYS[2], ttl * 2)
else
    redis.call('ZREM', KEYS[1], ARGV[1])
end
return old
"""
)

#: Reap lapsed nodes; return {reaped values, live values}.
#: KEYS: nodes. ARGV: hash key prefix.
LIST = Script(
    _NOW
    + _REAP
    + """
local removed = reap(KEYS[1], ARGV[1], now, '')
local live = {}
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local vals = redis.call('HVALS', ARGV[1] .. n)
    for i = 1, #vals do live[#live + 1] = vals[i] end
end
return {removed, live}
"""
)


class RedisPresence:
    """One node: a Redis layer's presence on one event loop.

    ``target`` says where a room's keys live (:func:`ring_target` of that
    loop's connections); ``send`` is the layer's
    ``group_send``, which carries the diffs.
    """

    def __init__(
        self,
        target: Target,
        prefix: str,
        serializer: MessageSerializer,
        send: Callable[[str, Message], Coroutine[Any, Any, None]],
        ttl: float,
    ) -> None:
        self._target = target
        self._prefix = prefix
        # Entries live for hours: no encryption TTL and no random prefix
        # (hash values need none), whatever the layer's messages use; a
        # custom serializer without these attributes is used as it is.
        entries: Any = copy.copy(serializer)
        if hasattr(entries, "expiry"):
            entries.expiry = None
        if hasattr(entries, "random_prefix_length"):
            entries.random_prefix_length = 0
        self._serializer: MessageSerializer = entries
        self.ttl = ttl
        self.node = uuid.uuid4().hex
        #: room -> channel -> (key, meta with its ref): this node's entries.
        self.local: dict[str, dict[str, tuple[str, Meta]]] = {}
        # Per room: writes under way, writes ever made (so a heartbeat knows
        # whether its count raced a write), and a restore under way (which
        # new writes wait for: it rewrites the node's whole hash).
        self._in_flight: dict[str, int] = {}
        self._writes: dict[str, int] = {}
        self._restoring: dict[str, asyncio.Event] = {}
        self._diffs = DiffBuffer()
        self._worker = DiffWorker(
            self._diffs,
            send,
            beat=self.renew,
            interval=ttl / 3,
            active=lambda: bool(self.local),
        )

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def _keys(self, room: str) -> tuple[Executor, str, str]:
        """The lane, nodes key and hash key prefix of ``room``."""
        nodes = f"{self._prefix}:presence:{{{room}}}"
        return self._target(nodes, room), nodes, nodes + ":"

    def _pack(self, key: str, meta: Meta) -> bytes:
        return self._serializer.serialize({"k": key, "m": meta})

    def _unpack(self, data: bytes) -> tuple[str, Meta]:
        entry = self._serializer.deserialize(data)
        return entry["k"], entry["m"]

    def _announce_leaves(self, room: str, values: list[bytes]) -> None:
        for data in values:
            try:
                key, meta = self._unpack(data)
            except ValueError:
                logger.warning("Dropped an unreadable presence entry in %r", room)
                continue
            self._diffs.leave(room, key, meta)

    @contextlib.asynccontextmanager
    async def _writing(self, room: str) -> AsyncIterator[None]:
        while (restoring := self._restoring.get(room)) is not None:
            await restoring.wait()
        self._in_flight[room] = self._in_flight.get(room, 0) + 1
        self._writes[room] = self._writes.get(room, 0) + 1
        try:
            yield
        finally:
            left = self._in_flight[room] - 1
            if left:
                self._in_flight[room] = left
            else:
                del self._in_flight[room]
                if room not in self.local:
                    self._writes.pop(room, None)

    async def track(self, room: str, channel: str, key: str, meta: Meta) -> None:
        async with self._writing(room):
            await self._track(room, channel, key, meta)

    async def _track(self, room: str, channel: str, key: str, meta: Meta) -> None:
        entries = self.local.setdefault(room, {})
        old = entries.get(channel)
        ref = new_ref()
        entry = (key, {**meta, REF: ref})
        lane, nodes, hashes = self._keys(room)
        entries[channel] = entry
        try:
            await PUT(
                lane,
                [nodes, hashes + self.node],
                [
                    self.node,
                    self._ttl_ms,
                    ref,
                    self._pack(*entry),
                    "" if old is None else old[1][REF],
                ],
            )
        except BaseException:
            # Not stored: keep what was there (the heartbeat fixes any doubt).
            if old is None:
                entries.pop(channel, None)
                if not entries:
                    self.local.pop(room, None)
            else:
                entries[channel] = old
            raise
        self._diffs.join(room, *entry)
        if old is not None:
            self._diffs.leave(room, *old)
        self._worker.wake()

    async def update(self, room: str, channel: str, meta: Meta) -> None:
        old = self.local.get(room, {}).get(channel)
        if old is None:
            raise LookupError(
                f"Channel {channel!r} tracks nothing in room {room!r} in this "
                "process: presence_track() it first"
            )
        await self.track(room, channel, old[0], meta)

    async def untrack(self, room: str, channel: str) -> None:
        entries = self.local.get(room)
        if entries is None or channel not in entries:
            return
        async with self._writing(room):
            await self._untrack(room, channel)

    async def _untrack(self, room: str, channel: str) -> None:
        entries = self.local.get(room)
        if entries is None or channel not in entries:
            return
        old = entries.pop(channel)
        if not entries:
            del self.local[room]
        self._diffs.leave(room, *old)
        self._worker.wake()
        lane, nodes, hashes = self._keys(room)
        # If this fails, the next heartbeat finds the count wrong and syncs.
        await DELETE(lane, [nodes, hashes + self.node], [self.node, old[1][REF]])

    async def list(self, room: str) -> Listing:
        lane, nodes, hashes = self._keys(room)
        removed, live = await LIST(lane, [nodes], [hashes])
        if removed:
            self._announce_leaves(room, removed)
            self._worker.wake()
        return group_metas([self._unpack(data) for data in live])

    async def renew(self) -> None:
        """Renew this node's lease in each of its rooms (the heartbeat),
        reaping lapsed nodes there and fixing this node's own entries."""
        rooms = list(self.local)
        for start in range(0, len(rooms), _RENEW_CONCURRENCY):
            await asyncio.gather(
                *(
                    self._renew(room)
                    for room in rooms[start : start + _RENEW_CONCURRENCY]
                )
            )

    async def _renew(self, room: str) -> None:
        lane, nodes, hashes = self._keys(room)
        writes = self._writes.get(room, 0)
        count, removed = await RENEW(
            lane, [nodes, hashes + self.node], [self.node, self._ttl_ms, hashes]
        )
        if removed:
            self._announce_leaves(room, removed)
        if room in self._in_flight or self._writes.get(room, 0) != writes:
            return  # the count raced a write; the next heartbeat checks
        entries = self.local.get(room, {})
        if int(count) != len(entries):
            restoring = self._restoring[room] = asyncio.Event()
            try:
                await self._sync(room, entries)
            finally:
                del self._restoring[room]
                restoring.set()

    async def _sync(self, room: str, entries: dict[str, tuple[str, Meta]]) -> None:
        """Make this node's hash in ``room`` hold exactly ``entries`` and
        announce what that changed."""
        logger.info("Restoring %d presence entries in room %r", len(entries), room)
        mine = list(entries.values())
        pairs: list[Any] = []
        for key, meta in mine:
            pairs += [meta[REF], self._pack(key, meta)]
        lane, nodes, hashes = self._keys(room)
        old = await SYNC(
            lane, [nodes, hashes + self.node], [self.node, self._ttl_ms, *pairs]
        )
        stored = {meta[REF]: (key, meta) for key, meta in map(self._unpack, old)}
        for key, meta in mine:
            if stored.pop(meta[REF], None) is None:
                self._diffs.join(room, key, meta)
        for key, meta in stored.values():
            self._diffs.leave(room, key, meta)

    async def aclose(self) -> None:
        """Remove this node's entries from Redis, announce their leave and
        stop the heartbeat."""
        local, self.local = self.local, {}
        for room, entries in local.items():
            for entry in entries.values():
                self._diffs.leave(room, *entry)
            lane, nodes, hashes = self._keys(room)
            try:
                await DROP(lane, [nodes, hashes + self.node], [self.node])
            except Exception:
                logger.warning("Could not remove presence entries of room %r", room)
        await self._worker.aclose()


class RedisPresenceMixin(PresenceMixin):
    """The presence API of the Redis layers; each call runs on the loop's
    node (or the bridge loop when called through ``async_to_sync``)."""

    _states: Any

    def _presence_store(self) -> RedisPresence:
        store: RedisPresence = self._states.get().presence
        return store

    presence_track = bridged(PresenceMixin.presence_track)
    presence_update = bridged(PresenceMixin.presence_update)
    presence_untrack = bridged(PresenceMixin.presence_untrack)
    presence_list = bridged(PresenceMixin.presence_list)
