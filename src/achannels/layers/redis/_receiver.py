"""Receiving for ``RedisChannelLayer`` on one event loop: pumps into inboxes.

Messages for this process's specific channels all sit in one key per name
prefix (``<prefix>specific.<client>!``), as in channels_redis; they carry
their full channel name (or, from ``group_send``, a list of names) in
``__asgi_channel__``. A pump per server drains that key and the inboxes
hand each message to its channel's receiver. On a Redis Cluster there is
one pump per key, reading wherever the key's slot is served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..._dispatch import RunHere
from ..._types import Message
from .._warnings import RateLimitedWarning
from ._cluster import Cluster
from ._connection import Lane
from ._inbox import LocalChannels, Queued
from ._pump import Entry, Pump
from .serializers import MessageSerializer

__all__ = ["RESERVED_KEY", "Receiver"]

logger = logging.getLogger("achannels.layers.redis")

#: Carries the target channel name(s) inside a stored message.
RESERVED_KEY = "__asgi_channel__"

_UNREADABLE = (
    "Dropped %d message(s) that could not be read (latest on %r: %s); check "
    "symmetric_encryption_keys and serializer_format across processes"
)


class Receiver:
    """The inboxes and pumps of one event loop."""

    def __init__(
        self,
        servers: list[Lane] | Cluster,
        key_of: Callable[[str], str],
        serializer: MessageSerializer,
        capacity_of: Callable[[str], int],
        expiry: float,
    ) -> None:
        # Every server is read, or on a cluster the one serving each key.
        self._servers: list[Lane | Cluster] = (
            [servers] if isinstance(servers, Cluster) else list(servers)
        )
        self._key_of = key_of
        self._serializer = serializer
        self._expiry = expiry
        self.local = LocalChannels(capacity_of, expiry)
        self._pumps: dict[tuple[int, str], tuple[Pump, asyncio.Task[None]]] = {}
        self._swept_at = time.monotonic()
        # Per receiver, so one layer's drops never silence another's report.
        self._unreadable = RateLimitedWarning(logger, _UNREADABLE)

    def receiving_locally(self) -> bool:
        """Return whether a pump reads a process-specific key on this loop."""
        return any(pump.local for pump, _ in self._pumps.values())

    async def receive_local(
        self,
        channel: str,
        name: str,
        loop: asyncio.AbstractEventLoop | None = None,
        run_here: RunHere | None = None,
    ) -> Message:
        """Return the next message for specific ``channel`` (whose shared part
        is ``name``), starting its pumps on first use; ``loop`` is the running
        loop, when the caller has it; ``run_here`` as for
        :meth:`LocalChannels.receive`."""
        return await self.local.receive(
            channel, lambda: self._start_local(name), loop, run_here
        )

    async def receive_shared(self, channel: str) -> Message:
        """Return the next message on plain ``channel``, which other
        processes may read too."""
        return await self.local.receive(channel, lambda: self._start_shared(channel))

    def _start_local(self, name: str) -> None:
        key = self._key_of(name)
        # Every server is read, not just the one the name hashes to, because
        # channels_redis's send() shards specific channels by the full name.
        for index, lane in enumerate(self._servers):
            if (index, key) not in self._pumps:
                pump = Pump(
                    lane,
                    key,
                    lambda entries: self._deliver(name, entries),
                    tick=self._tick,
                    expiry=int(self._expiry),
                    local=True,
                )
                self._spawn(index, pump)

    def _start_shared(self, channel: str) -> None:
        key = self._key_of(channel)
        for index, lane in enumerate(self._servers):
            running = self._pumps.get((index, key))
            if running is not None:
                running[0].wake()
                continue
            pump = Pump(
                lane,
                key,
                lambda entries: self._deliver_shared(channel, entries),
                demand=lambda: self.local.waiting(channel),
                expiry=int(self._expiry),
                restore_inflight=True,
            )
            self._spawn(index, pump)

    def _spawn(self, index: int, pump: Pump) -> None:
        # Owned here; cancelled and awaited by aclose().
        task = asyncio.get_running_loop().create_task(pump.run())
        self._pumps[index, pump.key] = (pump, task)

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._swept_at > min(self._expiry, 30):
            self._swept_at = now
            self.local.sweep()

    def _read(self, data: bytes, key: str) -> Message | None:
        try:
            message = self._serializer.deserialize(data)
        except Exception as error:  # a custom serializer may raise anything
            self._unreadable.count(1, key, error)
            return None
        if not isinstance(message, dict):
            self._unreadable.count(
                1, key, f"decoded a {type(message).__name__}, not a message dict"
            )
            return None
        return message

    def _deliver(self, name: str, entries: list[Entry]) -> list[Entry]:
        local = self.local
        now = time.monotonic()
        for data, _ in entries:
            message = self._read(data, self._key_of(name))
            if message is None:
                continue
            target = message.pop(RESERVED_KEY, name)
            if isinstance(target, str):
                local.deliver(target, message, now)
            elif not isinstance(target, list) or not all(
                isinstance(channel, str) for channel in target
            ):
                # Not written by a layer (Redis is shared): raising here
                # would end this pump and every receive() of the process.
                self._unreadable.count(
                    1, self._key_of(name), f"{RESERVED_KEY} is {target!r:.80}"
                )
            else:
                local.deliver_each(target, message, now)
        return []

    def _deliver_shared(self, channel: str, entries: list[Entry]) -> list[Entry]:
        leftovers = []
        for entry in entries:
            if not self.local.has_waiter(channel):
                leftovers.append(entry)
                continue
            message = self._read(entry[0], self._key_of(channel))
            if message is not None:
                message.pop(RESERVED_KEY, None)
                self.local.deliver(channel, message, time.monotonic())
        return leftovers

    async def aclose(self) -> Queued:
        """Stop the pumps and fail waiting receivers; return the messages
        read from Redis that nobody received yet."""
        tasks = [task for _, task in self._pumps.values()]
        self._pumps.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.local.close("The Redis channel layer was closed on this event loop")
