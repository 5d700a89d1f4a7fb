"""Sharded pub/sub subscriptions on a Redis Cluster, following their slots.

``RedisPubSubChannelLayer`` on a cluster publishes with ``SPUBLISH``, which
reaches only the shard (master and replicas) that serves the channel's hash
slot, so a subscriber must ``SSUBSCRIBE`` on that shard's master.
:class:`ShardedSubscriptions` keeps one sharded
:class:`~._subscriber.Subscriber` per master and puts each channel on the
master of its slot. When a slot moves, or a master fails and a replica takes
over, the channels are subscribed again where they live now:

- the node tells us (an unrequested ``sunsubscribe``, or ``MOVED`` for a
  subscription it refuses): the subscriber hands the channels back at once;
- the node's connection drops: the subscriber retries it, and meanwhile the
  slot map is read again every quarter second until every channel is
  subscribed on a reachable master.

Messages published while a channel is between masters are not delivered
(pub/sub keeps nothing); ``on_reconnect`` runs once they are subscribed
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError

from ..._tasks import OwnedTasks
from ._cluster import Address, Cluster, slot_of
from ._connection import CONNECTION_ERRORS, Backoff
from ._subscriber import Subscriber

__all__ = ["ShardedSubscriptions"]

logger = logging.getLogger("achannels.layers.redis")

# How often the slot map is read again while some channel has no master.
_REHOME_INTERVAL = 0.25
# New masters tried in a row before waiting (a slot moving twice while we
# follow it is already rare).
_REDIRECTS = 3
# How long subscribe() waits for a slot's master to accept a subscription
# while the slot moves or its master fails over. A failover takes the
# cluster's cluster-node-timeout (15 s by default) plus an election; twice
# that covers a default cluster with room on a busy host, and a cluster still
# without a master for the slot after it is down, not failing over.
_SETTLE_TIMEOUT = 30.0


class ShardedSubscriptions:
    """One event loop's sharded subscriptions on a cluster: the same
    ``subscribe``/``unsubscribe``/``aclose`` as one :class:`Subscriber`."""

    def __init__(
        self,
        cluster: Cluster,
        on_message: Callable[[str, bytes], None],
        on_disconnect: Callable[[], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self._cluster = cluster
        self._on_message = on_message
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self._nodes: dict[Address, Subscriber] = {}
        #: Channel to the node it is (or should be) subscribed on.
        self._home: dict[str, Address] = {}
        self._trouble = asyncio.Event()
        self._rehomer: asyncio.Task[None] | None = None
        self._tasks = OwnedTasks()  # The rehomer; aclose() stops it.

    @property
    def wanted(self) -> set[str]:
        """Every channel subscribed (or being subscribed again)."""
        return set(self._home)

    def _node(self, address: Address) -> Subscriber:
        subscriber = self._nodes.get(address)
        if subscriber is None:
            subscriber = self._nodes[address] = Subscriber(
                self._cluster.lane(address),
                self._on_message,
                lambda: self._link_lost(),
                self._on_reconnect,
                sharded=True,
                on_lost=self._lost,
            )
        return subscriber

    async def subscribe(self, name: str) -> None:
        """Subscribe to ``name`` on its slot's master; return once it
        confirmed.

        While the slot is moving or its master failing over, this waits for
        the cluster to settle: it rereads the slot map and tries the master
        it names, at once when that is a new one, else after a backoff. It
        raises :class:`redis.exceptions.ConnectionError` only when no master
        has accepted the subscription for ``_SETTLE_TIMEOUT`` seconds.
        """
        loop = asyncio.get_running_loop()
        await self._subscribe(name, loop.time() + _SETTLE_TIMEOUT)

    async def _subscribe(self, name: str, deadline: float) -> None:
        """Subscribe to ``name`` (see :meth:`subscribe`), trying until
        ``deadline`` (a past one: one round, following new masters)."""
        if name in self._home:
            return
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=0.05, cap=_REHOME_INTERVAL)
        redirects = 0
        while True:
            try:
                address = await self._cluster.address_of(name)
            except RedisConnectionError as failure:
                error: BaseException = failure  # The map cannot be read.
                moved_on = False
            else:
                self._home[name] = address
                try:
                    await self._node(address).subscribe(name)
                    return
                except (MovedError, *CONNECTION_ERRORS) as failure:
                    # Moved, dropped by a node that lost the slot, or the
                    # node is down: ask the cluster where the slot is now.
                    error = failure
                    self._home.pop(name, None)
                    await self._cluster.failed(failure)
                    moved_on = isinstance(failure, MovedError) or (
                        self._cluster.cached_address_of(name) != address
                    )
                except BaseException:
                    self._home.pop(name, None)
                    raise
            if moved_on and redirects < _REDIRECTS:
                redirects += 1  # The map names a new master: try it now.
                continue
            if loop.time() >= deadline:
                break
            # No news from the cluster yet: let it settle.
            redirects = 0
            await asyncio.sleep(backoff.next_delay())
        raise RedisConnectionError(
            f"Cannot subscribe to {name!r} on the {self._cluster.description}: "
            f"no master of its slot {slot_of(name)} accepted the subscription"
            + (
                f" within {_SETTLE_TIMEOUT:g}s (is the cluster down?)"
                if backoff.failures
                else ""
            )
            + f": {error}"
        ) from error

    def unsubscribe(self, name: str) -> None:
        """Stop receiving ``name``."""
        address = self._home.pop(name, None)
        if address is not None and address in self._nodes:
            self._nodes[address].unsubscribe(name)

    def _lost(self, names: set[str]) -> None:
        # The node dropped them; they stay wanted and move in the rehomer.
        self._wake()

    def _link_lost(self) -> Any:
        self._wake()
        if self._on_disconnect is not None:
            return self._on_disconnect()
        return None

    def _wake(self) -> None:
        self._trouble.set()
        if self._rehomer is None:
            self._rehomer = self._tasks.spawn(self._rehome())

    def _misplaced(self) -> list[str]:
        """Return the channels not subscribed on their slot's master now."""
        misplaced = []
        for name, address in self._home.items():
            subscriber = self._nodes.get(address)
            owner = self._cluster.cached_address_of(name)
            if (
                subscriber is None
                or name not in subscriber.wanted
                or (owner is not None and owner != address)
            ):
                misplaced.append(name)
        return misplaced

    async def _rehome(self) -> None:
        backoff = Backoff(base=0.05, cap=_REHOME_INTERVAL)
        while True:
            await self._trouble.wait()
            self._trouble.clear()
            moved = 0
            while True:
                try:
                    await self._cluster.refresh()
                except RedisConnectionError:
                    await asyncio.sleep(backoff.next_delay())
                    continue
                results = await asyncio.gather(
                    *(self._move(name) for name in self._misplaced())
                )
                moved += sum(results)
                await self._close_idle()
                if not self._misplaced() and all(
                    node.connected for node in self._nodes.values()
                ):
                    break
                await asyncio.sleep(backoff.next_delay())
            backoff.reset()
            if moved:
                logger.info(
                    "Subscribed again to %d channel(s) on their new Redis "
                    "Cluster master(s)",
                    moved,
                )
                await _call(self._on_reconnect)

    async def _move(self, name: str) -> bool:
        """Subscribe ``name`` on its slot's master now; return whether that
        worked (else it stays wanted for the next round)."""
        address = self._home.pop(name)
        old = self._nodes.get(address)
        if old is not None:
            old.unsubscribe(name)
        try:
            # One pass: the rehoming loop does the waiting.
            await self._subscribe(name, deadline=0.0)
        except RedisConnectionError:
            self._home.setdefault(name, address)
            return False
        return True

    async def _close_idle(self) -> None:
        """Close subscribers of nodes that serve none of our channels."""
        homes = set(self._home.values())
        for address in [a for a, node in self._nodes.items() if a not in homes]:
            if not self._nodes[address].wanted:
                await self._nodes.pop(address).aclose()

    async def aclose(self) -> None:
        """Stop every subscriber and the rehoming; subscriptions are dropped."""
        self._home.clear()
        self._rehomer = None
        await self._tasks.aclose()
        nodes = list(self._nodes.values())
        self._nodes.clear()
        for node in nodes:
            await node.aclose()


async def _call(callback: Callable[[], Any] | None) -> None:
    if callback is None:
        return
    try:
        result = callback()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result
    except Exception:
        logger.exception("on_reconnect callback failed")
