"""``RedisChannelLayer``: channels and groups in Redis sorted sets.

Same keys, scores, message bytes and sharding as channels_redis 4.x, so
processes running either library share channels and groups. Each operation
is one Lua script call; receiving is done by one pump per process key.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from ..._types import Message
from ...exceptions import ChannelFull
from .._base import BaseChannelLayer, ChannelCapacity
from .._warnings import RateLimitedWarning
from ._connection import Lane
from ._hosts import consistent_hash, decode_hosts
from ._loops import PerLoop, bridged, on_throwaway_loop, run_bridged
from ._receiver import RESERVED_KEY, Receiver
from ._scripts import GROUP_ADD, GROUP_DELIVER, GROUP_MEMBERS, SEND
from ._serializer import MAX_MESSAGE_SIZE, MessageSerializer

__all__ = ["RedisChannelLayer"]

logger = logging.getLogger("achannels.layers.redis")


class _LoopState:
    """What one event loop holds: connections and the receiver."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        self.lanes = [Lane(host) for host in layer.hosts]
        self.receiver = Receiver(
            self.lanes,
            layer.prefix,
            layer._serializer,
            layer.get_capacity,
            layer.expiry,
        )

    async def aclose(self) -> None:
        await self.receiver.aclose()
        for lane in self.lanes:
            await lane.aclose()


class RedisChannelLayer(BaseChannelLayer):
    """A channel layer in Redis, configured and stored as channels_redis 4.x's.

    ``hosts`` is a list of URLs, connection-argument dicts, ``(host, port)``
    pairs or Sentinel dicts; with several, keys are sharded over them.
    ``expiry`` (seconds a message waits), ``group_expiry`` (seconds a
    membership lasts), ``capacity`` and ``channel_capacity`` (messages a
    channel holds before :class:`~achannels.exceptions.ChannelFull`),
    ``symmetric_encryption_keys``, ``random_prefix_length`` and
    ``serializer_format`` (``"msgpack"`` or ``"json"``) mean what they mean
    there, with the same defaults. ``max_message_size`` (bytes on the wire)
    is new: larger messages raise
    :class:`~achannels.exceptions.MessageTooLarge` on send.

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
    ) -> None:
        super().__init__(
            expiry=expiry, capacity=capacity, channel_capacity=channel_capacity
        )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        self.prefix = prefix
        self.group_expiry = group_expiry
        self.hosts = decode_hosts(hosts)
        self.ring_size = len(self.hosts)
        self._serializer = MessageSerializer(
            serializer_format,
            symmetric_encryption_keys=symmetric_encryption_keys,
            random_prefix_length=random_prefix_length,
            expiry=expiry,
            max_message_size=max_message_size,
        )
        #: Names this instance's process-specific channels:
        #: ``specific.<client_prefix>!<random>``.
        self.client_prefix = uuid.uuid4().hex
        self._send_cycle = itertools.cycle(range(self.ring_size))
        self._last_score = 0.0
        self._full = RateLimitedWarning(
            logger,
            "group_send skipped %d channel(s) at capacity (latest group %r); "
            "their consumers are not keeping up",
        )
        self._states: PerLoop[_LoopState] = PerLoop(
            lambda: _LoopState(self), _LoopState.aclose
        )

    def __str__(self) -> str:
        return f"{type(self).__name__}(hosts={self.hosts})"

    # Helpers

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
        return self._serializer.deserialize(data)

    def _check_message(self, message: Message) -> None:
        self.require_valid_message(message)
        if RESERVED_KEY in message:
            raise ValueError(
                f"Messages must not contain the key {RESERVED_KEY!r}: the layer "
                "uses it to carry the target channel"
            )

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
        data = self._serializer.serialize(message)
        lane = self._states.get().lanes[index]
        score = self._score()
        capacity = self.get_capacity(channel)
        added = await SEND(
            lane,
            [self.prefix + name],
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
        if not name.endswith(f".{self.client_prefix}!"):
            raise ValueError(
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
        return await receiver.receive_local(channel, name, loop)

    # Groups

    def _group_key(self, group: str) -> str:
        return f"{self.prefix}:group:{group}"

    @bridged
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` for ``group_expiry`` seconds.

        Raises :class:`TypeError` for invalid names and
        :class:`redis.exceptions.ConnectionError` when Redis stays unreachable.
        """
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        lane = self._states.get().lanes[self.consistent_hash(group)]
        await GROUP_ADD(
            lane,
            [self._group_key(group)],
            [channel, time.time(), int(self.group_expiry)],
        )

    @bridged
    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; no error if it is not a member."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        lane = self._states.get().lanes[self.consistent_hash(group)]
        await lane.execute("ZREM", self._group_key(group), channel)

    async def group_send(self, group: str, message: Message) -> None:
        """Send ``message`` to every channel in ``group``.

        Members whose channel is at capacity are skipped (counted and logged
        at most once a minute). One script call reads the members and one per
        server delivers, whatever the group size. Raises like :meth:`send`
        for an invalid message, before anything is sent.
        """
        if on_throwaway_loop():
            return await run_bridged(self, self.group_send(group, message))
        self.require_valid_group_name(group)
        self._check_message(message)
        self._serializer.serialize(message)  # refuse bad messages before any I/O
        state = self._states.get()
        members = await GROUP_MEMBERS(
            state.lanes[self.consistent_hash(group)],
            [self._group_key(group)],
            [int(time.time()) - int(self.group_expiry)],
        )
        if not members:
            return
        # One stored message per key, naming every member channel behind it.
        by_name: dict[str, list[str]] = {}
        for channel in members.decode("utf8").split("\n"):
            bang = channel.find("!")
            name = channel if bang < 0 else channel[: bang + 1]
            by_name.setdefault(name, []).append(channel)
        shards: dict[int, tuple[list[str], list[Any], list[Any]]] = {}
        for name, channels in by_name.items():
            keys, datas, capacities = shards.setdefault(
                self.consistent_hash(name), ([], [], [])
            )
            keys.append(self.prefix + name)
            datas.append(
                self._serializer.serialize({**message, RESERVED_KEY: channels})
            )
            capacities.append(self.get_capacity(channels[0]))
        score = self._score()
        tail = [score, int(score) - int(self.expiry), int(self.expiry)]
        replies = await asyncio.gather(
            *(
                GROUP_DELIVER(state.lanes[index], keys, [*datas, *capacities, *tail])
                for index, (keys, datas, capacities) in shards.items()
            )
        )
        skipped = 0
        for (keys, _, _), full in zip(shards.values(), replies, strict=True):
            for position in full:
                skipped += len(by_name[keys[int(position) - 1][len(self.prefix) :]])
        if skipped:
            self._full.count(skipped, group)

    # Flush and close

    @bridged
    async def flush(self) -> None:
        """Delete every key under ``prefix`` on every server, and messages
        waiting in this process. Connections stay open."""
        state = self._states.get()
        pattern = _glob_escape(self.prefix) + "*"
        for lane in state.lanes:
            cursor: Any = 0
            while True:
                cursor, keys = await lane.execute(
                    "SCAN", cursor, "MATCH", pattern, "COUNT", 1000
                )
                if keys:
                    await lane.execute("UNLINK", *keys)
                if int(cursor) == 0:
                    break
        state.receiver.local.clear()

    @bridged
    async def close_pools(self) -> None:
        """Close this event loop's connections and stop its receiving; the
        layer reconnects on next use. Waiting receivers get
        :class:`~achannels.exceptions.ReceiverGone`."""
        await self._states.aclose_current()

    @bridged
    async def close(self) -> None:
        """Same as :meth:`close_pools`."""
        await self._states.aclose_current()


def _glob_escape(text: str) -> str:
    """Return ``text`` with Redis glob characters escaped."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
