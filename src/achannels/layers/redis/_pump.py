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
keep waiting; they resume when Redis is back. On a Redis Cluster the pump
reads from whichever master serves its key's slot, and after a MOVED reply
(the slot moved, or its master failed over) or a lost connection it asks the
cluster again before reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from ._cluster import CLUSTER_ERRORS, Cluster
from ._connection import CONNECTION_ERRORS, Backoff, Lane, pack_command, read_reply
from ._scripts import RESTORE_INFLIGHT, Executor

__all__ = ["Entry", "Pump", "UnexpectedReply"]

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
_CLUSTER_BACKOFF_CAP = 0.5


class UnexpectedReply(Exception):
    """Raised when a pop's reply has a shape Redis never gives that command
    (a proxy in the way, a connection crossed with another): the connection
    cannot be trusted for the next reply either."""


class Pump:
    """Moves messages from ``key`` on one server into local inboxes.

    ``deliver(entries)`` receives popped entries and returns the ones nobody
    took (for a shared key they go back to Redis). With ``demand`` the pump
    pops only ``demand()`` messages at a time and sleeps while it is 0;
    without it the pump drains eagerly. ``tick()`` runs after every pop.
    ``restore_inflight`` first returns what a dead channels_redis receiver
    left in the key's ``$inflight`` backup. ``local`` marks the key of this
    process's specific channels. ``lane`` is one server, or a
    cluster whose master for ``key`` the pump follows.
    """

    def __init__(
        self,
        lane: Lane | Cluster,
        key: str,
        deliver: Callable[[list[Entry]], list[Entry]],
        *,
        demand: Callable[[], int] | None = None,
        tick: Callable[[], None] | None = None,
        expiry: int = 60,
        restore_inflight: bool = False,
        local: bool = False,
    ) -> None:
        #: Whether the key holds this process's specific channels.
        self.local = local
        self._cluster = lane if isinstance(lane, Cluster) else None
        self.lane = lane if isinstance(lane, Lane) else None
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
        # On a cluster a retry first asks another node where the key lives,
        # so retrying often finds a promoted replica soon after the failover.
        backoff = Backoff(
            base=0.1,
            cap=_BACKOFF_CAP if self._cluster is None else _CLUSTER_BACKOFF_CAP,
        )
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
                        if self._cluster is not None:
                            self.lane = await self._cluster.lane_for(self.key)
                        lane = self._lane()
                        connection = lane.new_connection()
                        await lane.connect(connection)
                        if self._restore_inflight:
                            await RESTORE_INFLIGHT(
                                self._executor(),
                                [self.key, self.key + "$inflight"],
                                [],
                            )
                            self._restore_inflight = False
                    entries = await self._pop(connection, count)
                except (*CONNECTION_ERRORS, ResponseError, UnexpectedReply) as error:
                    # ResponseError too: besides MOVED and friends, a master
                    # that became a replica ends blocked pops with UNBLOCKED,
                    # and an error must never end the pump (every receive()
                    # of the process would wait forever).
                    if connection is not None:
                        await self._lane().discard(connection)
                        connection = None
                    if self._cluster is not None:
                        await self._cluster.failed(error)
                        if not backoff.failures and (
                            isinstance(error, CLUSTER_ERRORS)
                            or "UNBLOCKED" in str(error)
                        ):
                            # The slot moved: read it where it is now, at once.
                            logger.info(
                                "Reading %r on another node: %s", self.key, error
                            )
                            backoff.next_delay()
                            continue
                    delay = backoff.next_delay()
                    if backoff.failures == 1 and isinstance(error, UnexpectedReply):
                        logger.error(
                            "Unexpected reply from Redis at %s while reading %r "
                            "(%s); dropped the connection, reconnecting",
                            self._where(),
                            self.key,
                            error,
                        )
                    elif backoff.failures == 1:
                        logger.warning(
                            "%s Redis at %s while reading %r (%s); %s",
                            "Lost" if reached else "Cannot reach",
                            self._where(),
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
                        self._where(),
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
                await asyncio.shield(self._lane().discard(connection))

    def _lane(self) -> Lane:
        assert self.lane is not None, "located before use"
        return self.lane

    def _executor(self) -> Executor:
        if self._cluster is not None:
            return self._cluster.at(self.key)
        return self._lane()

    def _where(self) -> str:
        if self.lane is not None:
            return self.lane.description
        assert self._cluster is not None
        return self._cluster.description

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
            reply = await read_reply(connection, BLOCK_SECONDS + 5)
        except ResponseError as error:
            if self._bzmpop and "unknown command" in str(error).lower():
                # Redis before 7.0: one message per round trip.
                self._bzmpop = False
                return []
            raise
        if reply is None:
            return []
        try:
            if self._bzmpop:
                entries = [(member, score) for member, score in reply[1]]
            else:
                entries = [(reply[1], reply[2])]
        except (TypeError, ValueError, IndexError, KeyError):
            entries = []
        # Scores are bulk strings in RESP2, doubles in RESP3 (a user-set
        # protocol); a message is always a bulk string.
        if not entries or not all(
            member.__class__ is bytes and score.__class__ in (bytes, float)
            for member, score in entries
        ):
            command = "BZMPOP" if self._bzmpop else "BZPOPMIN"
            raise UnexpectedReply(f"{command} answered {reply!r:.200}")
        return entries

    async def _put_back(self, entries: list[Entry]) -> None:
        """Return unclaimed messages to a shared key with their old scores,
        so another process (or a later receiver) gets them in order."""
        args: list[Any] = []
        for member, score in entries:
            args += [score, member]
        executor = self._executor()
        try:
            await executor.execute("ZADD", self.key, *args)
            await executor.execute("EXPIRE", self.key, self._expiry)
        except (*CONNECTION_ERRORS, ResponseError) as error:
            # Raised on, it would end the pump (an error reply too: a full
            # Redis refuses the ZADD with OOM).
            logger.warning(
                "Could not return %d message(s) to %r on %s (%s); they are lost",
                len(entries),
                self.key,
                self._where(),
                error,
            )
