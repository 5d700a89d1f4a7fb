"""``RedisPubSubChannelLayer``: channels and groups as Redis pub/sub channels.

Channel names, group channel names (``<prefix>__group__<group>``), sharding
and message bytes are channels_redis 4.3's, so processes running either
library exchange messages. A message reaches only receivers subscribed when
it is published; nothing is stored in Redis.

On a Redis Cluster the layer uses sharded pub/sub (``SPUBLISH`` and
``SSUBSCRIBE``, Redis 7): a message goes to the one shard serving its
channel's slot instead of being broadcast to every node.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..._dispatch import RunHere
from ..._types import Message
from .._base import BaseChannelLayer
from .._warnings import RateLimitedWarning
from ._cluster import Cluster
from ._connection import Lane, unreachable
from ._group_size import GroupSizes
from ._hosts import cluster_spec, consistent_hash, decode_hosts
from ._inbox import LocalChannels
from ._loops import PerLoop, bridged, on_throwaway_loop, run_bridged
from ._presence import (
    DEFAULT_PRESENCE_TTL,
    RedisPresence,
    RedisPresenceMixin,
    check_presence_ttl,
    layer_target,
)
from ._sharded import ShardedSubscriptions
from ._subscriber import Subscriber
from .serializers import (
    MAX_MESSAGE_SIZE,
    MessageSerializer,
    registry,
    serialize_within,
)

__all__ = ["RedisPubSubChannelLayer"]

logger = logging.getLogger("achannels.layers.redis")

# Options of channels_redis's core layer that its pub/sub layer accepts and
# ignores; configs are often copied between the two.
_CORE_ONLY = {"group_expiry", "random_prefix_length", "channel_capacity"}

_UNREADABLE = (
    "Dropped %d pub/sub message(s) that could not be read (latest on %r: %s); "
    "check symmetric_encryption_keys and serializer_format across processes"
)


class _LoopState:
    """One event loop's connections, subscriptions and inboxes."""

    def __init__(self, layer: RedisPubSubChannelLayer) -> None:
        self.layer = layer
        spec = cluster_spec(layer.hosts)
        self.cluster = Cluster(spec) if spec is not None else None
        self.lanes = [] if spec is not None else [Lane(host) for host in layer.hosts]
        self.subscribers = [
            Subscriber(lane, self.on_message, layer.on_disconnect, layer.on_reconnect)
            for lane in self.lanes
        ]
        self.sharded = (
            ShardedSubscriptions(
                self.cluster, self.on_message, layer.on_disconnect, layer.on_reconnect
            )
            if self.cluster is not None
            else None
        )
        self.local = LocalChannels(lambda _: layer._inbox_capacity, layer._inbox_expiry)
        #: Channels that exist in this process (made or received on here).
        self.channels: set[str] = set()
        #: Group channel name to the local channels in the group.
        self.groups: dict[str, set[str]] = {}
        # Per receiver, so one layer's drops never silence another's report.
        self.unreadable = RateLimitedWarning(logger, _UNREADABLE)
        self.sizes = GroupSizes(self, layer.prefix, self.publish)
        self.presence = RedisPresence(
            layer_target(self.cluster, self.lanes),
            layer.prefix,
            layer._serializer,
            layer.group_send,
            layer.presence_ttl,
        )

    def subscriber(self, name: str) -> Subscriber | ShardedSubscriptions:
        if self.sharded is not None:
            return self.sharded
        return self.subscribers[consistent_hash(name, len(self.subscribers))]

    async def publish(self, name: str, data: str | bytes) -> int:
        """Publish ``data`` on ``name``; return how many subscribers got it
        (on a cluster, ``SPUBLISH`` counts the shard that owns ``name``,
        which is where every subscriber of ``name`` is)."""
        if self.cluster is not None:
            return int(await self.cluster.execute(name, "SPUBLISH", name, data))
        lane = self.lanes[consistent_hash(name, len(self.lanes))]
        return int(await lane.execute("PUBLISH", name, data))

    def on_message(self, name: str, data: bytes) -> None:
        direct = name in self.channels
        members = None if direct else self.groups.get(name)
        if not direct and not members:
            if self.sizes.handles(name):
                self.sizes.on_message(name, data)
            return
        try:
            message = self.layer._serializer.deserialize(data)
        except Exception as error:  # a custom serializer may raise anything
            self.unreadable.count(1, name, error)
            return
        now = time.monotonic()
        if members is None:
            self.local.deliver(name, message, now)
        else:
            # A snapshot: a handler run here may join or leave the group (the
            # set would change under the loop and end this reader), and every
            # member at the time of the message gets it.
            self.local.deliver_each(tuple(members), message, now)

    async def aclose(self) -> None:
        await self.presence.aclose()
        await self.sizes.aclose()
        for subscriber in self.subscribers:
            await subscriber.aclose()
        if self.sharded is not None:
            await self.sharded.aclose()
        self.local.close("The Redis pub/sub channel layer was flushed or closed")
        for lane in self.lanes:
            await lane.aclose()
        if self.cluster is not None:
            await self.cluster.aclose()


class RedisPubSubChannelLayer(RedisPresenceMixin, BaseChannelLayer):
    """A channel layer on Redis pub/sub, configured as channels_redis 4.x's.

    Options: ``hosts`` (as for :class:`RedisChannelLayer`, a Redis Cluster
    included: sharded pub/sub), ``prefix``,
    ``on_disconnect`` / ``on_reconnect`` (callables, plain or async, run when
    a subscription connection drops and is restored),
    ``symmetric_encryption_keys`` and ``serializer_format``. ``capacity`` and
    ``expiry``, which channels_redis ignores here, bound the messages waiting
    in this process for a slow receiver when given. ``presence_ttl`` (new)
    is how many seconds a dead process's presence entries outlive it.

    Differences users notice: subscriptions survive a Redis restart; group
    membership and subscription are confirmed by Redis before ``group_add``
    and ``new_channel`` return; while Redis is unreachable they raise
    :class:`redis.exceptions.ConnectionError` instead of hanging.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: Iterable[Any] | None = None,
        prefix: str = "asgi",
        on_disconnect: Callable[[], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        symmetric_encryption_keys: Iterable[str | bytes] | None = None,
        serializer_format: str = "msgpack",
        expiry: float | None = None,
        capacity: int | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        presence_ttl: float = DEFAULT_PRESENCE_TTL,
        **ignored: Any,
    ) -> None:
        super().__init__(expiry=expiry or 60, capacity=capacity or 100)
        unknown = set(ignored) - _CORE_ONLY
        if unknown:
            logger.warning(
                "RedisPubSubChannelLayer ignores unknown option(s) %s",
                ", ".join(sorted(unknown)),
            )
        self.prefix = prefix
        self.presence_ttl = check_presence_ttl(presence_ttl)
        self.hosts = decode_hosts(hosts)
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect
        self._inbox_capacity = capacity if capacity is not None else sys.maxsize
        self._inbox_expiry = expiry if expiry is not None else math.inf
        self._serializer: MessageSerializer = registry.get_serializer(
            serializer_format, symmetric_encryption_keys=symmetric_encryption_keys
        )
        self.max_message_size = max_message_size
        self._states: PerLoop[_LoopState] = PerLoop(
            lambda: _LoopState(self), _LoopState.aclose
        )

    def __str__(self) -> str:
        return f"{type(self).__name__}(hosts={self.hosts})"

    async def _check_reachable(self) -> list[str]:
        """For the lifespan startup check: why each host is unreachable."""
        return await unreachable(self.hosts)

    def serialize(self, message: Message) -> bytes:
        """Return ``message`` as channels_redis would publish it."""
        return self._serializer.serialize(message)

    def deserialize(self, data: bytes) -> Message:
        """Return the message published as ``data``."""
        message: Message = self._serializer.deserialize(data)
        return message

    def _group_channel(self, group: str) -> str:
        return f"{self.prefix}__group__{group}"

    async def _publish(self, name: str, message: Message) -> None:
        # Any value the format carries, not only dicts: channels_redis'
        # pub/sub layer publishes whatever it is given, and its tests send str.
        data = serialize_within(self._serializer, message, self.max_message_size)
        await self._states.get().publish(name, data)

    async def send(self, channel: str, message: Message) -> None:
        """Publish ``message`` on ``channel``; lost if nobody is subscribed.
        As in channels_redis, ``message`` may be any value the serializer
        carries (consumers dispatch dicts with a ``type``).

        Raises :class:`TypeError` for an invalid name or unserializable value
        (naming the key), :class:`~achannels.exceptions.MessageTooLarge`, and
        :class:`redis.exceptions.ConnectionError` while Redis is unreachable.
        """
        if on_throwaway_loop():
            return await run_bridged(self, self.send(channel, message))
        self._require_known_channel(channel)
        await self._publish(channel, message)

    @bridged
    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new channel name, already subscribed in this process."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        await self._subscribe_channel(self._states.get(), channel)
        return channel

    async def _subscribe_channel(self, state: _LoopState, channel: str) -> None:
        state.channels.add(channel)
        try:
            await state.subscriber(channel).subscribe(channel)
        except BaseException:
            state.channels.discard(channel)
            raise

    async def receive(self, channel: str) -> Message:
        """Return the next message published on ``channel``, subscribing
        first if needed. Cancelling the receive unsubscribes the channel
        (as channels_redis does: a consumer that stops receiving is gone)."""
        loop = asyncio.get_running_loop()  # once: a syscall before 3.12
        if on_throwaway_loop(loop):
            return await run_bridged(self, self.receive(channel))
        self._require_known_channel(channel)
        state = self._states.get(loop)
        if channel not in state.channels:
            await self._subscribe_channel(state, channel)
        try:
            return await state.local.receive(channel, _nothing, loop)
        except asyncio.CancelledError:
            self._stop_receiving(state, channel)
            raise

    def _stop_receiving(self, state: _LoopState, channel: str) -> None:
        """A receive() on ``channel`` was cancelled: unsubscribe unless
        another receiver still waits."""
        if channel in state.channels and not state.local.waiting(channel):
            state.channels.discard(channel)
            state.local.forget(channel)
            state.subscriber(channel).unsubscribe(channel)

    def _listener(self, channel: str) -> Callable[[], Awaitable[Message]] | None:
        """Return ``receive(channel)`` for a consumer's listener, or ``None``
        when ``receive`` was replaced (a subclass, a test's wrapper), which
        the listener must then call."""
        if type(self).receive is not RedisPubSubChannelLayer.receive or (
            "receive" in vars(self)
        ):
            return None
        self._require_known_channel(channel)
        return _Listener(self, channel)

    @bridged
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` (a channel of this process) to ``group``.

        Raises :class:`RuntimeError` for a channel not made or received on in
        this process, as channels_redis does.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._states.get()
        if channel not in state.channels:
            raise RuntimeError(
                "You can only call group_add() on channels that exist "
                f"in-process: {channel!r} was not made by new_channel() here. "
                f"Use self.channel_layer.group_add({group!r}, self.channel_name)"
            )
        name = self._group_channel(group)
        members = state.groups.setdefault(name, set())
        members.add(channel)
        try:
            await state.subscriber(name).subscribe(name)
            await state.sizes.answer_counts()
        except BaseException:
            members.discard(channel)
            if not members:
                state.groups.pop(name, None)
            raise

    @bridged
    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; no error if it is not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        state = self._states.get()
        name = self._group_channel(group)
        members = state.groups.get(name)
        if members is None or channel not in members:
            return
        members.discard(channel)
        if not members:
            del state.groups[name]
            state.subscriber(name).unsubscribe(name)

    @bridged
    async def group_size(self, group: str) -> int:
        """Return how many channels are in ``group``, over every process: one
        question on a control channel, one answer per process with members
        (none to the members themselves)."""
        self.require_valid_group_name(group)
        return await self._states.get().sizes.count(self._group_channel(group))

    async def group_send(self, group: str, message: Message) -> None:
        """Publish ``message`` to every process subscribed to ``group``."""
        if on_throwaway_loop():
            return await run_bridged(self, self.group_send(group, message))
        self.require_valid_group_name(group)
        await self._publish(self._group_channel(group), message)

    @bridged
    async def flush(self) -> None:
        """Forget every channel and group of this event loop and close its
        connections; the layer stays usable. Waiting receivers get
        :class:`~achannels.exceptions.ReceiverGone`."""
        await self._states.aclose_current()

    @bridged
    async def close(self) -> None:
        """Close this event loop's connections (same as :meth:`flush`)."""
        await self._states.aclose_current()


def _nothing() -> None:
    """Nothing to start before waiting: the subscription delivers."""


class _Listener:
    """``receive(channel)`` as a consumer's listener calls it: from one task
    on one loop, once per message, all its life. So what cannot change
    between its calls (the name is valid, the loop is the one it started on,
    and not a throwaway one) is checked on the first call only; on Python
    < 3.12 reading the running loop is a system call per message."""

    __slots__ = ("_channel", "_here", "_layer", "_loop")

    def __init__(self, layer: RedisPubSubChannelLayer, channel: str) -> None:
        self._layer = layer
        self._channel = channel
        self._loop: asyncio.AbstractEventLoop | None = None
        self._here: RunHere | None = None

    def run_here(self, run: RunHere | None) -> None:
        """Let ``run`` start the handling of messages arriving while this
        listener waits, in the subscription's reader (see ``_dispatch``)."""
        self._here = run

    async def __call__(self) -> Message:
        layer, channel, loop = self._layer, self._channel, self._loop
        if loop is None:
            loop = asyncio.get_running_loop()
            if on_throwaway_loop(loop):
                return await layer.receive(channel)
            self._loop = loop
        # Looked up each time: flush() replaces the loop's state.
        state = layer._states.get(loop)
        if channel not in state.channels:
            await layer._subscribe_channel(state, channel)
        try:
            return await state.local.receive(channel, _nothing, loop, self._here)
        except asyncio.CancelledError:
            layer._stop_receiving(state, channel)
            raise
