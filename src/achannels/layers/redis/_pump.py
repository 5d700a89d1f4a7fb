"""A pump: the one task that reads a channel key for this process.

A process-specific key (``<prefix>specific.<client>!``) holds the messages of
every consumer of one layer instance; one pump per server drains it with a
blocking pop that takes a batch at a time and hands each message to the
right inbox. channels_redis instead polls with ``BZPOPMIN`` from inside
``receive()``, several round trips per message.

A plain channel key (``<prefix>thumbnails``) is shared with other processes,
so its pump pops only as many messages as there are local receivers waiting,
and puts back what arrives after they left.

When the connection fails the pump reconnects with backoff while receivers
keep waiting; they resume when Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from ._connection import CONNECTION_ERRORS, Backoff, Lane, pack_command
from ._scripts import RESTORE_INFLIGHT

__all__ = ["Entry", "Pump"]

logger = logging.getLogger("achannels.layers.redis")

#: One popped message: its bytes and its score (send time) as Redis sent it.
Entry = tuple[bytes, bytes]

# How long one blocking pop waits before the pump looks around (sweeps
# expired local messages, notices it was told to stop).
BLOCK_SECONDS = 5.0
_BATCH = 256
# Reconnection attempts slow down to one every this many seconds, so
# receivers resume within about that long after Redis is back.
_BACKOFF_CAP = 2.0


class Pump:
    """Moves messages from ``key`` on one server into local inboxes.

    ``deliver(entries)`` receives popped entries and returns the ones nobody
    took (for a shared key they go back to Redis). With ``demand`` the pump
    pops only ``demand()`` messages at a time and sleeps while it is 0;
    without it the pump drains eagerly. ``tick()`` runs after every pop.
    ``restore_inflight`` first returns what a dead channels_redis receiver
    left in the key's ``$inflight`` backup.
    """

    def __init__(
        self,
        lane: Lane,
        key: str,
        deliver: Callable[[list[Entry]], list[Entry]],
        *,
        demand: Callable[[], int] | None = None,
        tick: Callable[[], None] | None = None,
        expiry: int = 60,
        restore_inflight: bool = False,
    ) -> None:
        self.lane = lane
        self.key = key
        self._deliver = deliver
        self._demand = demand
        self._tick = tick
        self._expiry = expiry
        self._wanted = asyncio.Event()
        self._bzmpop = True
        # The pop command never changes for a given count: pack it once.
        self._packed: dict[int, bytes] = {}
        self._restore_inflight = restore_inflight

    def wake(self) -> None:
        """Tell a demand-driven pump that a receiver is waiting."""
        self._wanted.set()

    async def run(self) -> None:
        """Pump until cancelled."""
        backoff = Backoff(base=0.1, cap=_BACKOFF_CAP)
        connection: AbstractConnection | None = None
        # "Lost" only for a server this pump has read from; before that it
        # was never reached (Redis down at start, a wrong host).
        reached = False
        try:
            while True:
                count = _BATCH
                if self._demand is not None:
                    count = self._demand()
                    if count <= 0:
                        self._wanted.clear()
                        await self._wanted.wait()
                        continue
                try:
                    if connection is None:
                        connection = self.lane.new_connection()
                        await self.lane.connect(connection)
                        if self._restore_inflight:
                            await RESTORE_INFLIGHT(
                                self.lane, [self.key, self.key + "$inflight"], []
                            )
                            self._restore_inflight = False
                    entries = await self._pop(connection, count)
                except CONNECTION_ERRORS as error:
                    if connection is not None:
                        await self.lane.discard(connection)
                        connection = None
                    delay = backoff.next_delay()
                    if backoff.failures == 1:
                        logger.warning(
                            "%s Redis at %s while reading %r (%s); %s",
                            "Lost" if reached else "Cannot reach",
                            self.lane.description,
                            self.key,
                            error,
                            "reconnecting" if reached else "retrying",
                        )
                    await asyncio.sleep(delay)
                    continue
                reached = True
                if backoff.failures:
                    logger.info(
                        "Reading %r from Redis at %s again",
                        self.key,
                        self.lane.description,
                    )
                    backoff.reset()
                if entries:
                    try:
                        leftovers = self._deliver(entries)
                    except Exception:
                        # A delivery bug must not end the pump silently: every
                        # receive() of this process would hang after it.
                        logger.exception(
                            "Dropped %d message(s) from %r: delivering them failed",
                            len(entries),
                            self.key,
                        )
                        leftovers = []
                    if leftovers:
                        await self._put_back(leftovers)
                if self._tick is not None:
                    self._tick()
        finally:
            if connection is not None:
                await asyncio.shield(self.lane.discard(connection))

    async def _pop(self, connection: AbstractConnection, count: int) -> list[Entry]:
        """Block until ``key`` has messages; pop up to ``count`` of them."""
        if self._bzmpop:
            packed = self._packed.get(count)
            if packed is None:
                packed = self._packed[count] = pack_command(
                    "BZMPOP", BLOCK_SECONDS, 1, self.key, "MIN", "COUNT", count
                )
        else:
            packed = pack_command("BZPOPMIN", self.key, BLOCK_SECONDS)
        await connection.send_packed_command(packed, check_health=False)
        try:
            reply = await connection.read_response(timeout=BLOCK_SECONDS + 5)
        except ResponseError as error:
            if self._bzmpop and "unknown command" in str(error).lower():
                # Redis before 7.0: one message per round trip.
                self._bzmpop = False
                return []
            raise
        if reply is None:
            return []
        if self._bzmpop:
            return [(member, score) for member, score in reply[1]]
        return [(reply[1], reply[2])]

    async def _put_back(self, entries: list[Entry]) -> None:
        """Return unclaimed messages to a shared key with their old scores,
        so another process (or a later receiver) gets them in order."""
        args: list[Any] = []
        for member, score in entries:
            args += [score, member]
        try:
            await self.lane.execute("ZADD", self.key, *args)
            await self.lane.execute("EXPIRE", self.key, self._expiry)
        except CONNECTION_ERRORS:
            logger.warning(
                "Could not return %d message(s) to %r on %s; they are lost",
                len(entries),
                self.key,
                self.lane.description,
            )
