"""``RedisEventHistory``: event streams' history in Redis Streams, shared by
every process.

Each group's events are a stream ``<prefix>:history:<group>``. Publishing
is one Lua script: it reads the newest entry's id (the event's predecessor),
``XADD``s the event with a Redis-made id, trims by count (``MAXLEN ~``) and
by age (``XTRIM MINID ~``) and refreshes the key's TTL, so ids are ordered
across processes and the chain of predecessors has no hole however many
processes publish at once. A stream resumes with ``XRANGE`` from its last
id. Trimming is approximate (``~``), as Redis recommends: a group holds at
least ``max_events`` recent events and a little more until the next trim.
Needs Redis 6.2 or newer (``XTRIM MINID``, exclusive ``XRANGE`` starts).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgpack

from ... import DEFAULT_CHANNEL_LAYER
from ..._types import Message
from ...generic.sse._history import START_ID, channel_layer_for, stamp
from ._cluster import Cluster, SlotTarget
from ._connection import Lane
from ._hosts import HostSpec, cluster_spec, consistent_hash, decode_hosts
from ._loops import PerLoop, bridged
from ._scripts import Script

__all__ = ["RedisEventHistory"]

#: Append one event. KEYS: the group's stream. ARGV: the message bytes,
#: max events, max age (ms). Reply: ``{id, previous id}``.
APPEND = Script(
    """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local previous = '0-0'
if newest[1] then previous = newest[1][1] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                      'p', previous, 'm', ARGV[1])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
               - tonumber(ARGV[3])
if oldest > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', oldest))
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {id, previous}
"""
)


class _Lanes:
    """One event loop's connections, one lane per host (or a cluster's)."""

    def __init__(self, hosts: list[HostSpec]) -> None:
        spec = cluster_spec(hosts)
        self.cluster = Cluster(spec) if spec is not None else None
        self.lanes = [] if spec is not None else [Lane(host) for host in hosts]

    async def aclose(self) -> None:
        for lane in self.lanes:
            await lane.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()


class RedisEventHistory:
    """Event history in Redis Streams, for streams served by many processes.

    ``hosts`` as for the Redis layers (default: the hosts of the channel
    layer ``channel_layer_alias`` when it is a Redis layer, else
    ``redis://localhost:6379``); with several, groups are sharded over them.
    Messages are stored with that layer's serializer (so its
    ``symmetric_encryption_keys`` apply), or msgpack for another layer.
    Each group keeps about ``max_events`` events of at most ``max_age``
    seconds; a group nobody publishes to for ``max_age`` is deleted.
    """

    def __init__(
        self,
        hosts: Iterable[Any] | None = None,
        *,
        prefix: str = "asgi",
        max_events: int = 1000,
        max_age: float = 3600.0,
        channel_layer_alias: str = DEFAULT_CHANNEL_LAYER,
    ) -> None:
        if max_events < 1 or max_age <= 0:
            raise ValueError("max_events must be at least 1 and max_age positive")
        self.max_events = max_events
        self.max_age = max_age
        self.prefix = prefix
        self.channel_layer_alias = channel_layer_alias
        self._hosts: list[HostSpec] | None = (
            None if hosts is None else decode_hosts(hosts)
        )
        self._states: PerLoop[_Lanes] = PerLoop(
            lambda: _Lanes(self._resolve_hosts()), _Lanes.aclose
        )

    def _resolve_hosts(self) -> list[HostSpec]:
        if self._hosts is None:
            layer = channel_layer_for(self.channel_layer_alias)
            hosts = getattr(layer, "hosts", None)
            self._hosts = [dict(h) for h in hosts] if hosts else decode_hosts(None)
        return self._hosts

    def _lane(self, group: str) -> Lane | SlotTarget:
        state = self._states.get()
        if state.cluster is not None:
            # One key per script call, so no hash tag is needed.
            return state.cluster.at(self._key(group))
        return state.lanes[consistent_hash(group, len(state.lanes))]

    def _key(self, group: str) -> str:
        return f"{self.prefix}:history:{group}"

    # ``async_to_sync`` callers (a Django view publishing) run on a new
    # event loop per call; @bridged moves their calls to the layers' one
    # background loop, whose connections live on between calls.

    @bridged
    async def group_send(self, group: str, message: Message) -> str:
        """Append ``message`` to ``group``'s history, then send it to the
        group through the layer with ``event_id`` (the Redis Stream id) and
        ``__history__`` added; return its id."""
        layer = channel_layer_for(self.channel_layer_alias)
        if hasattr(layer, "require_valid_group_name"):
            layer.require_valid_group_name(group)
        stamp(message, group, START_ID, START_ID)  # refuse a bad message first
        serialize = getattr(layer, "serialize", None)
        data = serialize(message) if serialize else msgpack.packb(message)
        reply = await APPEND(
            self._lane(group),
            [self._key(group)],
            [data, self.max_events, math.ceil(self.max_age * 1000)],
        )
        event_id, previous = (_text(part) for part in reply)
        # Sent after the append: a stream that sees it live and finds its
        # predecessor missing reads the history, which has both.
        await layer.group_send(group, stamp(message, group, event_id, previous))
        return event_id

    @bridged
    async def last_id(self, group: str) -> str | None:
        reply = await self._lane(group).execute(
            "XREVRANGE", self._key(group), "+", "-", "COUNT", 1
        )
        return _text(reply[0][0]) if reply else None

    @bridged
    async def read_after(
        self, group: str, after: str, until: str | None = None
    ) -> list[Message]:
        reply = await self._lane(group).execute(
            "XRANGE", self._key(group), f"({after}", until or "+"
        )
        layer = channel_layer_for(self.channel_layer_alias)
        deserialize = getattr(layer, "deserialize", None)
        events: list[Message] = []
        for entry_id, fields in reply:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            data = values[b"m"]
            message = deserialize(data) if deserialize else msgpack.unpackb(data)
            events.append(stamp(message, group, _text(entry_id), _text(values[b"p"])))
        return events

    async def aclose(self) -> None:
        """Close this event loop's connections (reopened on next use)."""
        await self._states.aclose_current()

    # The name the background loop's shutdown calls, as on the layers.
    close = aclose


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
