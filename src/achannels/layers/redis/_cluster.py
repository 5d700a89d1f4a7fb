"""Commands to a Redis Cluster from one event loop: slots, nodes, redirects.

A :class:`Cluster` keeps the slot map (from ``CLUSTER SLOTS``) and one
:class:`~._connection.Lane` per master, and sends each command to the master
of its key's slot. It follows ``MOVED`` (updating the map and refreshing it
from the cluster) and ``ASK`` (``ASKING`` plus the command, on one
connection), waits out ``TRYAGAIN``/``CLUSTERDOWN`` within the lanes' short
backoff, and after a connection failure asks the cluster where the slot went:
a command whose master died is retried on the promoted replica once the
cluster reports it, and until then fails with
:class:`redis.exceptions.ConnectionError` naming the slot and node.

:meth:`Cluster.run_batch` sends many commands at once: one pipeline per
master, all masters in parallel, so ``group_send`` to members on every node
costs one round trip per node.

The layers drive the cluster through the same Lanes as a single Redis rather
than through redis-py's ``RedisCluster``: the pumps hold their own blocking
connection per key and the subscribers one per node, both of which must
follow a slot to its new master, and the per-message path stays the packed
commands the single-Redis layers send.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from ._connection import CONNECTION_ERRORS, Backoff, Lane
from ._hosts import HostSpec, cluster_node, cluster_seeds, describe_host

__all__ = ["CLUSTER_ERRORS", "SLOTS", "Address", "Cluster", "SlotTarget", "slot_of"]

SLOTS = 16384

#: Replies that mean "not here, not now": the slot moved, is moving, or the
#: cluster is between masters.
CLUSTER_ERRORS = (MovedError, AskError, TryAgainError, ClusterDownError, ReadOnlyError)

Address = tuple[str, int]

# Redirections one command follows before giving up (a slot moving twice
# while we chase it is already rare).
_REDIRECTS = 5
# While the cluster is between masters (TRYAGAIN, CLUSTERDOWN, a master that
# does not answer), a command waits this long in total before it fails.
_GAP_BUDGET = 1.0
# A refresh this recent is fresh enough for a MOVED to trust.
_REFRESH_INTERVAL = 0.2


def slot_of(key: str | bytes) -> int:
    """Return the cluster hash slot of ``key`` (its ``{tag}`` if it has one)."""
    return int(key_slot(key.encode("utf-8") if isinstance(key, str) else key))


class SlotTarget:
    """Runs commands on the master of one key's slot (what a Script needs)."""

    __slots__ = ("cluster", "key")

    def __init__(self, cluster: Cluster, key: str) -> None:
        self.cluster = cluster
        self.key = key

    async def execute(self, *args: Any) -> Any:
        return await self.cluster.execute(self.key, *args)


class Cluster:
    """One event loop's connections to a Redis Cluster."""

    def __init__(self, spec: HostSpec) -> None:
        self._spec = spec
        self.description = describe_host(spec)
        self._seeds = [
            (str(seed["host"]), int(seed["port"])) for seed in cluster_seeds(spec)
        ]
        self._lanes: dict[Address, Lane] = {}
        self._slots: list[Address | None] = [None] * SLOTS
        self._refreshing: asyncio.Future[None] | None = None
        self._refreshed_at = 0.0
        self._closed = False

    # Topology

    def lane(self, address: Address) -> Lane:
        """Return the lane to ``address``, made on first use."""
        lane = self._lanes.get(address)
        if lane is None:
            if self._closed:
                raise RedisConnectionError(
                    f"Redis channel layer connections to {self.description} are closed"
                )
            lane = self._lanes[address] = Lane(cluster_node(self._spec, *address))
        return lane

    async def refresh(self) -> None:
        """Read the slot map from the cluster (one refresh at a time; callers
        during one share it). Raises :class:`redis.exceptions.ConnectionError`
        when no known node answers."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refreshing = future
        try:
            await self._refresh()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody else
            raise
        else:
            future.set_result(None)
        finally:
            self._refreshing = None

    async def _refresh(self) -> None:
        # Nodes that served slots before first (they know the latest map),
        # then the seeds.
        known = list(dict.fromkeys(a for a in self._slots if a is not None))
        candidates = list(dict.fromkeys([*known, *self._seeds]))
        errors = []
        for address in candidates:
            try:
                # One try each: a dead master is common here (failover),
                # and the next node knows the map as well.
                reply = await self.lane(address).execute("CLUSTER", "SLOTS", attempts=1)
            except (*CONNECTION_ERRORS, ResponseError) as error:
                errors.append(f"{address[0]}:{address[1]}: {error}")
                continue
            slots: list[Address | None] = [None] * SLOTS
            for start, end, master, *_ in reply:
                host = master[0].decode("utf-8") if master[0] else address[0]
                node = (host, int(master[1]))
                for slot in range(int(start), int(end) + 1):
                    slots[slot] = node
            self._slots = slots
            self._refreshed_at = time.monotonic()
            await self._close_unused()
            return
        raise RedisConnectionError(
            f"No node of the {self.description} answered CLUSTER SLOTS: "
            + "; ".join(errors)
        )

    async def _close_unused(self) -> None:
        """Close lanes to nodes that no longer serve a slot (a master that
        failed over and became a replica, or left)."""
        serving = set(self._slots)
        for address in [a for a in self._lanes if a not in serving]:
            if address in self._seeds:
                continue
            await self._lanes.pop(address).aclose()

    async def _follow_moved(self, error: MovedError) -> None:
        self._slots[error.slot_id] = error.node_addr
        if time.monotonic() - self._refreshed_at > _REFRESH_INTERVAL:
            try:
                await self.refresh()
            except RedisConnectionError:
                pass  # The MOVED reply alone says where to go.
            self._slots[error.slot_id] = error.node_addr

    async def address_of(self, key: str) -> Address:
        """Return the address of the master serving ``key``'s slot."""
        slot = slot_of(key)
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot]
            if address is None:
                raise RedisConnectionError(
                    f"No master serves slot {slot} of the {self.description} "
                    "(the cluster is missing slots)"
                )
        return address

    def cached_address_of(self, key: str) -> Address | None:
        """Return where ``key``'s slot was served at the last refresh."""
        return self._slots[slot_of(key)]

    async def lane_for(self, key: str) -> Lane:
        """Return the lane to the master serving ``key``'s slot."""
        return self.lane(await self.address_of(key))

    async def failed(self, error: BaseException) -> None:
        """Take note of ``error`` from a connection of ours (a pump's, a
        subscriber's): follow a MOVED, refresh the map after anything else.
        Never raises for a cluster that cannot be reached."""
        try:
            if isinstance(error, MovedError):
                await self._follow_moved(error)
            else:
                await self.refresh()
        except RedisConnectionError:
            pass

    async def masters(self) -> list[Lane]:
        """Return a lane to every master, after refreshing the map."""
        await self.refresh()
        return [self.lane(a) for a in dict.fromkeys(self._slots) if a is not None]

    def at(self, key: str) -> SlotTarget:
        """Return a target that runs commands where ``key`` lives."""
        return SlotTarget(self, key)

    # Commands

    async def execute(self, key: str, *args: Any) -> Any:
        """Run one command on the master of ``key``'s slot and return its
        reply, following redirects and failovers (see the module doc)."""
        address = self._slots[slot_of(key)]
        if address is not None:
            # The common case, without run_batch's bookkeeping: the map is
            # right and the master answers.
            try:
                return await self.lane(address).execute(*args)
            except MovedError as error:
                await self._follow_moved(error)
            except (AskError, TryAgainError, ClusterDownError):
                pass
            except CONNECTION_ERRORS as error:
                await self.failed(error)
        (reply,) = await self.run_batch([(key, args)])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def run_batch(self, calls: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run each ``(key, command)`` on its key's master: one pipeline per
        master, all masters in parallel. Return the replies in order; a call
        that failed has its exception in its place (an error reply, or a
        :class:`redis.exceptions.ConnectionError` when its slot has had no
        reachable master for about a second).

        Redirected calls are sent again where the cluster says; an
        ``EVALSHA`` that meets ``NOSCRIPT`` is left to the caller (Script).
        """
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        redirect_to: dict[int, Address] = {}
        asking: set[int] = set()
        redirects = 0
        gap = Backoff(base=0.05, cap=0.4)
        gap_started: float | None = None
        while True:
            by_node: dict[Address, list[int]] = {}
            for index in pending:
                address = redirect_to.pop(index, None)
                if address is None:
                    address = await self.address_of(calls[index][0])
                by_node.setdefault(address, []).append(index)
            outcomes = await asyncio.gather(
                *(
                    self._pipeline(address, calls, indexes, asking)
                    for address, indexes in by_node.items()
                ),
                return_exceptions=True,
            )
            asking = set()
            retry: list[int] = []
            unreachable: dict[Address, BaseException] = {}
            in_gap = False
            for (address, indexes), outcome in zip(
                by_node.items(), outcomes, strict=True
            ):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, CONNECTION_ERRORS):
                        raise outcome
                    unreachable[address] = outcome
                    retry += indexes
                    in_gap = True
                    continue
                for index, reply in zip(indexes, outcome, strict=True):
                    if isinstance(reply, MovedError):
                        await self._follow_moved(reply)
                        redirect_to[index] = reply.node_addr
                        retry.append(index)
                    elif isinstance(reply, AskError):
                        redirect_to[index] = reply.node_addr
                        asking.add(index)
                        retry.append(index)
                    elif isinstance(reply, (TryAgainError, ClusterDownError)):
                        retry.append(index)
                        in_gap = True
                    else:
                        replies[index] = reply
            if not retry:
                return replies
            if in_gap:
                if unreachable:
                    # Where did the slots of the silent masters go?
                    await self.failed(next(iter(unreachable.values())))
                now = time.monotonic()
                if gap_started is None:
                    gap_started = now
                elif now - gap_started > _GAP_BUDGET:
                    for index in retry:
                        replies[index] = self._gap_error(calls[index][0], unreachable)
                    return replies
                await asyncio.sleep(gap.next_delay())
            else:
                redirects += 1
                if redirects > _REDIRECTS:
                    for index in retry:
                        replies[index] = RedisConnectionError(
                            f"Redis Cluster kept redirecting the command for "
                            f"key {calls[index][0]!r} ({_REDIRECTS} times); "
                            "is it resharding?"
                        )
                    return replies
            pending = retry

    def _gap_error(
        self, key: str, unreachable: dict[Address, BaseException]
    ) -> RedisConnectionError:
        slot = slot_of(key)
        address = self._slots[slot]
        cause = unreachable.get(address) if address is not None else None
        where = f"{address[0]}:{address[1]}" if address else "no node"
        return RedisConnectionError(
            f"Redis Cluster slot {slot} (key {key!r}) has no reachable master "
            f"(last known: {where}); a failover may be in progress, retry "
            f"shortly" + (f": {cause}" if cause is not None else "")
        )

    async def _pipeline(
        self,
        address: Address,
        calls: list[tuple[str, tuple[Any, ...]]],
        indexes: list[int],
        asking: set[int],
    ) -> list[Any]:
        lane = self.lane(address)
        if len(indexes) == 1 and not asking:
            try:
                return [await lane.execute(*calls[indexes[0]][1])]
            except ResponseError as error:
                return [error]
        commands: list[tuple[Any, ...]] = []
        positions = []
        for index in indexes:
            if index in asking:
                commands.append(("ASKING",))
            positions.append(len(commands))
            commands.append(calls[index][1])
        replies = await lane.execute_many(commands)
        return [replies[position] for position in positions]

    async def aclose(self) -> None:
        """Close every lane; later commands fail."""
        self._closed = True
        lanes = list(self._lanes.values())
        self._lanes.clear()
        for lane in lanes:
            await lane.aclose()
