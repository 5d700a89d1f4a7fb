"""``RedisChannelLayer``: channels and groups in Redis sorted sets.

Same keys, scores, message bytes and sharding as channels_redis 4.x, so
processes running either library share channels and groups. Each operation
is one Lua script call; receiving is done by one pump per process key.

On a Redis Cluster (``hosts=[{"cluster": [...]}]``) the keys carry hash tags
(``<prefix>{<channel>}``, ``<prefix>:group:{<group>}``) so every script's
keys share a slot, and ``group_send`` delivers with one pipeline per node.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..._dispatch import RunHere
from ..._errors import ForeignChannel, InvalidPrefix, ReservedMessageKey
from ..._types import Message
from ...exceptions import ChannelFull
from .._base import BaseChannelLayer, ChannelCapacity
from ._cluster import Cluster, SlotTarget, slot_of
from ._connection import Lane, unreachable
from ._hosts import cluster_spec, consistent_hash, decode_hosts
from ._inbox import Leftovers
from ._loops import PerLoop, bridged, on_throwaway_loop, run_bridged
from ._presence import (
    DEFAULT_PRESENCE_TTL,
    RedisPresence,
    RedisPresenceMixin,
    check_presence_ttl,
    layer_target,
)
from ._receiver import RESERVED_KEY, Receiver
from ._scripts import GROUP_ADD, GROUP_DELIVER, GROUP_MEMBERS, SEND
from .serializers import (
    MAX_MESSAGE_SIZE,
    MessageSerializer,
    registry,
    serialize_within,
)

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger("achannels.layers.redis")


class _LoopState:
    """What one event loop holds: connections and the receiver."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        spec = layer._cluster_spec
        self.cluster = Cluster(spec) if spec is not None else None
        self.lanes = [] if spec is not None else [Lane(host) for host in layer.hosts]
        self.receiver = Receiver(
            self.cluster if self.cluster is not None else self.lanes,
            layer._key,
            layer._serializer,
            layer.get_capacity,
            layer.expiry,
        )
        self._leftovers = layer._leftovers
        self.receiver.local.adopt(self._leftovers.take())
        self.presence = RedisPresence(
            layer_target(self.cluster, self.lanes),
            layer.prefix,
            layer._serializer,
            layer.group_send,
            layer.presence_ttl,
        )

    async def aclose(self) -> None:
        await self.presence.aclose()
        self._leftovers.keep(await self.receiver.aclose())
        for lane in self.lanes:
            await lane.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()

    def target(self, key: str, index: int) -> Lane | SlotTarget:
        """Where a command on ``key`` runs: host ``index`` of the ring, or
        the cluster node serving the key."""
        if self.cluster is not None:
            return self.cluster.at(key)
        return self.lanes[index]


class RedisChannelLayer(RedisPresenceMixin, BaseChannelLayer):
    """A channel layer in Redis, configured and stored as channels_redis 4.x's.

    ``hosts`` is a list of URLs, connection-argument dicts, ``(host, port)``
    pairs or Sentinel dicts; with several, keys are sharded over them. A
    Redis Cluster is ``[{"cluster": [seed URLs...]}]``.
    ``expiry`` (seconds a message waits), ``group_expiry`` (seconds a
    membership lasts), ``capacity`` and ``channel_capacity`` (messages a
    channel holds before :class:`~achannels.exceptions.ChannelFull`),
    ``symmetric_encryption_keys``, ``random_prefix_length`` and
    ``serializer_format`` (``"msgpack"`` or ``"json"``) mean what they mean
    there, with the same defaults. ``max_message_size`` (bytes on the wire)
    is new: larger messages raise
    :class:`~achannels.exceptions.MessageTooLarge` on send, and so is
    ``presence_ttl`` (seconds a dead process's presence entries outlive it).

    Differences users notice: ``send`` checks that the message can be
    serialized and names the offending key; Redis outages are retried inside
    the layer (callers get :class:`redis.exceptions.ConnectionError` within
    about a second; receivers wait and resume); every receiver of a group
    message gets its own copy; connections are kept per event loop and closed
    with it.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: Iterable[Any] | None = None,
        prefix: str = "asgi",
        expiry: int = 60,
        group_expiry: int = 86400,
        capacity: int = 100,
        channel_capacity: ChannelCapacity | None = None,
        symmetric_encryption_keys: Iterable[str | bytes] | None = None,
        random_prefix_length: int = 12,
        serializer_format: str = "msgpack",
        max_message_size: int = MAX_MESSAGE_SIZE,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        if not isinstance(prefix, str):
            raise InvalidPrefix(f"prefix must be a str, got {type(prefix).__name__}")
        self.prefix = prefix
        self.group_expiry = group_expiry
        self.presence_ttl = check_presence_ttl(presence_ttl)
        self.hosts = decode_hosts(hosts)
        self.ring_size = len(self.hosts)
        self._cluster_spec = cluster_spec(self.hosts)
        if self._cluster_spec is not None and ("{" in prefix or "}" in prefix):
            raise ValueError(
                f"prefix={prefix!r} contains a brace: on a Redis Cluster the "
                "layer puts each channel's and group's name in {...} (a hash "
                "tag), which a brace in the prefix would override"
            )
        self._serializer: MessageSerializer = registry.get_serializer(
            serializer_format,
            # The random prefix keeps equal messages apart in a sorted set.
            random_prefix_length=random_prefix_length,
            expiry=expiry,
            symmetric_encryption_keys=symmetric_encryption_keys,
        )
        self.max_message_size = max_message_size
        #: Names this instance's process-specific channels:
        #: ``specific.<client_prefix>!<random>``.
        self.client_prefix = uuid.uuid4().hex
        self._send_cycle = itertools.cycle(range(self.ring_size))
        self._last_score = 0.0
        # Messages read for this process outlive one loop's receiver.
        self._leftovers = Leftovers()
        self._states: PerLoop[_LoopState] = PerLoop(
            lambda: _LoopState(self), _LoopState.aclose
        )

    def __str__(self) -> str:
        return f"{type(self).__name__}(hosts={self.hosts})"

    async def _check_reachable(self) -> list[str]:
        """For the lifespan startup check: why each host is unreachable."""
        return await unreachable(self.hosts)

    # Helpers

    def _key(self, name: str) -> str:
        """Return the Redis key of channel ``name`` (for a specific channel,
        the part up to ``!``); tagged with its name on a cluster."""
        if self._cluster_spec is not None:
            return f"{self.prefix}{{{name}}}"
        return self.prefix + name

    def consistent_hash(self, value: str | bytes) -> int:
        """Return the index of the host that holds ``value``'s key."""
        return consistent_hash(value, self.ring_size)

    def _score(self) -> float:
        # Strictly increasing per layer, so messages one sender sends to one
        # channel keep their order even within a clock tick.
        now = time.time()
        if now <= self._last_score:
            now = self._last_score + 1e-6
        self._last_score = now
        return now

    def serialize(self, message: Message) -> bytes:
        """Return ``message`` as channels_redis would store it."""
        return self._serializer.serialize(message)

    def deserialize(self, data: bytes) -> Message:
        """Return the message stored as ``data``."""
        message: Message = self._serializer.deserialize(data)
        return message

    def _check_message(self, message: Message) -> None:
        self.require_valid_message(message)
        if RESERVED_KEY in message:
            raise ReservedMessageKey(RESERVED_KEY)

    # Channels

    async def new_channel(self, prefix: str = "specific") -> str:
        """Return a new process-specific channel name this instance receives on."""
        return f"{prefix}.{self.client_prefix}!{uuid.uuid4().hex}"

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``.

        Raises :class:`~achannels.exceptions.ChannelFull` when the channel
        holds ``capacity`` messages, :class:`TypeError` for an invalid name or
        a value that cannot be serialized (naming the key),
        :class:`~achannels.exceptions.MessageTooLarge`, and
        :class:`redis.exceptions.ConnectionError` when Redis stays unreachable.
        """
        if on_throwaway_loop():
            return await run_bridged(self, self.send(channel, message))
        self._check_message(message)
        self._require_known_channel(channel)
        bang = channel.find("!")
        if bang >= 0:
            message = {**message, RESERVED_KEY: channel}
            name = channel[: bang + 1]
            index = self.consistent_hash(name)
        else:
            name = channel
            index = next(self._send_cycle)
        data = serialize_within(self._serializer, message, self.max_message_size)
        key = self._key(name)
        score = self._score()
        capacity = self.get_capacity(channel)
        added = await SEND(
            self._states.get().target(key, index),
            [key],
            [data, score, int(score) - int(self.expiry), capacity, int(self.expiry)],
        )
        if not added:
            raise ChannelFull(
                f"Channel {channel!r} holds {capacity} messages, its capacity: "
                "its receiver is not keeping up (see capacity/channel_capacity)"
            )

    async def receive(self, channel: str) -> Message:
        """Return the next message on ``channel``, waiting for one.

        Process-specific channels (``...!...``) must come from this instance's
        :meth:`new_channel`. Cancelling a receive never loses a message.
        While Redis is unreachable the wait continues and resumes when it is
        back. Raises :class:`TypeError` for an invalid name.
        """
        loop = asyncio.get_running_loop()  # once: a syscall before 3.12
        if on_throwaway_loop(loop):
            return await run_bridged(self, self.receive(channel))
        self._require_known_channel(channel)
        receiver = self._states.get(loop).receiver
        bang = channel.find("!")
        if bang < 0:
            return await receiver.receive_shared(channel)
        name = channel[: bang + 1]
        self._check_local_receive(channel, name, receiver)
        return await receiver.receive_local(channel, name, loop)

    def _check_local_receive(self, channel: str, name: str, receiver: Receiver) -> None:
        """Raise unless ``receiver`` may receive on specific ``channel``."""
        if not name.endswith(f".{self.client_prefix}!"):
            raise ForeignChannel(
                f"Channel {channel!r} was not made by this layer instance's "
                "new_channel(): only the process that created a specific "
                "channel can receive on it"
            )
        if not receiver.receiving_locally() and any(
            state.receiver.receiving_locally() for state in self._states.others()
        ):
            raise RuntimeError(
                "Two event loops are receiving on process-specific channels of "
                "one RedisChannelLayer at once; receive from one loop, or use "
                "one layer instance per loop"
            )

    def _listener(self, channel: str) -> Callable[[], Awaitable[Message]] | None:
        """Return ``receive(channel)`` for a consumer's listener, or ``None``
        when ``receive`` was replaced (a subclass, a test's wrapper), which
        the listener must then call, or ``channel`` is no specific one."""
        if type(self).receive is not RedisChannelLayer.receive or (
            "receive" in vars(self)
        ):
            return None
        bang = channel.find("!")
        if bang < 0:
            return None
        self._require_known_channel(channel)
        return _Listener(self, channel, channel[: bang + 1])

    # Groups

    def _group_key(self, group: str) -> bytes:
        # bytes, as channels_redis's (code written for it reads this key).
        return self._group_key_str(group).encode()

    def _group_key_str(self, group: str) -> str:
        if self._cluster_spec is not None:
            return f"{self.prefix}:group:{{{group}}}"
        return f"{self.prefix}:group:{group}"

    @bridged
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` for ``group_expiry`` seconds.

        Raises :class:`TypeError` for invalid names and
        :class:`redis.exceptions.ConnectionError` when Redis stays unreachable.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        key = self._group_key_str(group)
        await GROUP_ADD(
            self._states.get().target(key, self.consistent_hash(group)),
            [key],
            [channel, time.time(), int(self.group_expiry)],
        )

    @bridged
    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; no error if it is not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        key = self._group_key_str(group)
        target = self._states.get().target(key, self.consistent_hash(group))
        await target.execute("ZREM", key, channel)

    @bridged
    async def group_size(self, group: str) -> int:
        """Return how many channels are in ``group`` (memberships younger
        than ``group_expiry``); no message is sent."""
        self.require_valid_group_name(group)
        key = self._group_key_str(group)
        target = self._states.get().target(key, self.consistent_hash(group))
        joined_after = int(time.time()) - int(self.group_expiry)
        count = await target.execute("ZCOUNT", key, f"({joined_after}", "+inf")
        return int(count)

    async def group_send(self, group: str, message: Message) -> None:
        """Send ``message`` to every channel in ``group``.

        Members whose channel is at capacity are skipped, and logged at INFO
        as in channels_redis ("N of M channels over capacity in group G").
        One script call reads the members and one per server delivers,
        whatever the group size. Raises like :meth:`send`
        for an invalid message, before anything is sent.
        """
        if on_throwaway_loop():
            return await run_bridged(self, self.group_send(group, message))
        self.require_valid_group_name(group)
        self._check_message(message)
        # Refuse bad messages before any I/O.
        serialize_within(self._serializer, message, self.max_message_size)
        state = self._states.get()
        group_key = self._group_key_str(group)
        members = await GROUP_MEMBERS(
            state.target(group_key, self.consistent_hash(group)),
            [group_key],
            [int(time.time()) - int(self.group_expiry)],
        )
        if not members:
            return
        # One stored message per key, naming every member channel behind it.
        by_name: dict[str, list[str]] = {}
        members_list = members.decode("utf8").split("\n")
        for channel in members_list:
            bang = channel.find("!")
            name = channel if bang < 0 else channel[: bang + 1]
            by_name.setdefault(name, []).append(channel)
        # One script call per host, or on a cluster per hash slot (a
        # script's keys must share one); the cluster pipelines them per node.
        cluster = state.cluster
        shards: dict[int, tuple[list[str], list[str], list[Any], list[Any]]] = {}
        for name, channels in by_name.items():
            key = self._key(name)
            names, keys, datas, capacities = shards.setdefault(
                slot_of(key) if cluster is not None else self.consistent_hash(name),
                ([], [], [], []),
            )
            names.append(name)
            keys.append(key)
            datas.append(
                serialize_within(
                    self._serializer,
                    {**message, RESERVED_KEY: channels},
                    self.max_message_size,
                )
            )
            capacities.append(self.get_capacity(channels[0]))
        score = self._score()
        tail = [score, int(score) - int(self.expiry), int(self.expiry)]
        replies: list[Any]
        if cluster is None:
            replies = await asyncio.gather(
                *(
                    GROUP_DELIVER(
                        state.lanes[index], keys, [*datas, *capacities, *tail]
                    )
                    for index, (_, keys, datas, capacities) in shards.items()
                )
            )
        else:
            replies = await GROUP_DELIVER.run_batch(
                cluster,
                [
                    (keys, [*datas, *capacities, *tail])
                    for _, keys, datas, capacities in shards.values()
                ],
            )
        failure: BaseException | None = None
        for (names, _, _, _), full in zip(shards.values(), replies, strict=True):
            if isinstance(full, BaseException):
                failure = failure or full
                continue
            skipped = sum(len(by_name[names[int(position) - 1]]) for position in full)
            if skipped:
                # channels_redis' line, level and cadence (one per server and
                # group_send): its tests and users' log filters expect them.
                logger.info(
                    "%s of %s channels over capacity in group %s",
                    skipped,
                    len(members_list),
                    group,
                )
        if failure is not None:
            # The members on reachable nodes have the message.
            raise failure

    # Flush and close

    @bridged
    async def flush(self) -> None:
        """Delete every key under ``prefix`` on every server, and messages
        waiting in this process. Connections stay open."""
        state = self._states.get()
        pattern = _glob_escape(self.prefix) + "*"
        lanes = state.lanes if state.cluster is None else await state.cluster.masters()
        for lane in lanes:
            cursor: Any = 0
            while True:
                cursor, keys = await lane.execute(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", 1000
                )
                if keys and state.cluster is None:
                    await lane.execute("UNLINK", *keys)
                elif keys:
                    # One key per command: keys of several slots in one
                    # command are refused (CROSSSLOT) on a cluster.
                    await lane.execute_many([("UNLINK", key) for key in keys])
                if int(cursor) == 0:
                    break
        state.receiver.local.clear()
        self._leftovers.clear()

    @bridged
    async def close_pools(self) -> None:
        """Close this event loop's connections and stop its receiving; the
        layer reconnects on next use. Waiting receivers get
        :class:`~achannels.exceptions.ReceiverGone`; messages already read
        for this process wait for the next ``receive()``, on any loop."""
        await self._states.aclose_current()

    @bridged
    async def close(self) -> None:
        """Same as :meth:`close_pools`."""
        await self._states.aclose_current()


class _Listener:
    """``receive(channel)`` for a consumer's listener, which calls it from one
    task on one loop once per message: the loop and the name are checked on
    the first call, the receiver whenever the loop's state is new (as the
    pub/sub layer's listener)."""

    __slots__ = ("_channel", "_here", "_layer", "_loop", "_name", "_receiver")

    def __init__(self, layer: RedisChannelLayer, channel: str, name: str) -> None:
        self._layer = layer
        self._channel = channel
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Receiver | None = None
        self._here: RunHere | None = None

    def run_here(self, run: RunHere | None) -> None:
        """Let ``run`` start the handling of messages arriving while this
        listener waits, in the pump (see ``_dispatch``)."""
        self._here = run

    async def __call__(self) -> Message:
        layer, channel, loop = self._layer, self._channel, self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
            if on_throwaway_loop(loop):
                return await layer.receive(channel)
            self._loop = loop
        receiver = layer._states.get(loop).receiver
        if receiver is not self._receiver:
            layer._check_local_receive(channel, self._name, receiver)
            self._receiver = receiver
        return await receiver.receive_local(channel, self._name, loop, self._here)


def _glob_escape(text: str) -> str:
    """Return ``text`` with Redis glob characters escaped."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
