"""One Redis server's subscriptions for ``RedisPubSubChannelLayer``.

A :class:`Subscriber` owns one subscribed connection and the task reading
it. It remembers every channel it should be subscribed to, so when the
connection drops it reconnects with backoff and subscribes to all of them
again (channels_redis 4.3 loses them). ``subscribe()`` returns once Redis
confirmed the subscription, so a message published right after it is not
missed, and fails with a clear error while Redis is unreachable.

On a Redis Cluster a subscriber is one node's, and ``sharded``: it uses
``SSUBSCRIBE`` (Redis 7), and hands back through ``on_lost`` the channels the
node stopped serving (their slot moved or the node became a replica: Redis
says so with an unrequested ``sunsubscribe`` or a ``MOVED`` reply), so that
:class:`~._sharded.ShardedSubscriptions` subscribes them where they live now.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, ResponseError

from ..._tasks import OwnedTasks
from ._cluster import slot_of
from ._connection import CONNECTION_ERRORS, Backoff, Lane, pack_command

__all__ = ["Subscriber"]

logger = logging.getLogger("achannels.layers.redis")

# A subscriber waits this long for Redis to (re)connect or confirm.
_CONFIRM_TIMEOUT = 5.0
# Reconnection attempts slow down to one every this many seconds.
_BACKOFF_CAP = 2.0
# Silent for this long: PING; silent for twice as long: the link is dead
# (a black-holed network sends no reset).
_HEALTH_INTERVAL = 15.0


class Subscriber:
    """Subscriptions to one server; ``on_message(channel, data)`` gets each
    published message. ``on_disconnect`` / ``on_reconnect`` (plain or async
    callables without arguments) run when the link drops and comes back."""

    def __init__(
        self,
        lane: Lane,
        on_message: Callable[[str, bytes], None],
        on_disconnect: Callable[[], Any] | None = None,
        on_reconnect: Callable[[], Any] | None = None,
        *,
        sharded: bool = False,
        on_lost: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._lane = lane
        self._sharded = sharded
        self._on_lost = on_lost
        prefix = "S" if sharded else ""
        self._subscribe_command = prefix + "SUBSCRIBE"
        self._unsubscribe_command = prefix + "UNSUBSCRIBE"
        self._message_kind = b"smessage" if sharded else b"message"
        self._confirm_kind = b"ssubscribe" if sharded else b"subscribe"
        self._on_message = on_message
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self.wanted: set[str] = set()
        self._connection: AbstractConnection | None = None
        self._connected = asyncio.Event()
        # Set on every connection attempt's outcome; _error is the last failure.
        self._attempted = asyncio.Event()
        self._error: BaseException | None = None
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        # Our own UNSUBSCRIBEs: the task sending each channel's latest one
        # (a new SUBSCRIBE goes after it), and, sharded, how many SUNSUBSCRIBE
        # replies on the current connection are answers to ours rather than
        # the node dropping the channel.
        self._unsubscribing: dict[str, asyncio.Task[None]] = {}
        self._own_unsubscribes: dict[str, int] = {}
        self._reader: asyncio.Task[None] | None = None
        # The reader and background sends; aclose() cancels and awaits them.
        self._tasks = OwnedTasks(self._task_failed)
        self._heard_at = time.monotonic()
        self._pinged = False

    async def subscribe(self, name: str) -> None:
        """Subscribe to ``name`` and return once Redis confirmed it.

        Raises :class:`redis.exceptions.ConnectionError` when Redis cannot be
        reached within a few seconds.
        """
        if name in self.wanted:
            return
        self.wanted.add(name)
        try:
            pending = self._unsubscribing.get(name)
            if pending is not None:
                # Its UNSUBSCRIBE must reach Redis before this SUBSCRIBE.
                await asyncio.wait({pending})
            await self._wait_connected()
            confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._confirmations.setdefault(name, []).append(confirmed)
            await self._send(self._subscribe_command, name)
            # After a reconnect the reader subscribes again and confirms.
            # asyncio.wait, not wait_for: Python 3.11's wait_for swallows our
            # cancellation when the confirmation arrives in the same tick.
            await asyncio.wait({confirmed}, timeout=_CONFIRM_TIMEOUT)
            if not confirmed.done():
                raise RedisConnectionError(
                    f"Redis at {self._lane.description} did not confirm the "
                    f"subscription to {name!r} within {_CONFIRM_TIMEOUT:g}s"
                )
            confirmed.result()
        except BaseException:
            self.wanted.discard(name)
            raise

    def unsubscribe(self, name: str) -> None:
        """Stop receiving ``name``; the UNSUBSCRIBE is sent in the background."""
        if name not in self.wanted:
            return
        self.wanted.discard(name)
        if self._connected.is_set():
            task = self._spawn(self._send_unsubscribe(name))
            self._unsubscribing[name] = task
            task.add_done_callback(functools.partial(self._unsubscribe_sent, name))

    def _unsubscribe_sent(self, name: str, task: asyncio.Task[None]) -> None:
        if self._unsubscribing.get(name) is task:
            del self._unsubscribing[name]

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up."""
        return self._connected.is_set()

    def _subscribe_all(self) -> bytes:
        """Return the command(s) subscribing to every wanted channel: one
        SUBSCRIBE, or one SSUBSCRIBE per hash slot (a sharded subscription
        must not span slots)."""
        if not self._sharded:
            return pack_command("SUBSCRIBE", *sorted(self.wanted))
        by_slot: dict[int, list[str]] = {}
        for name in sorted(self.wanted):
            by_slot.setdefault(slot_of(name), []).append(name)
        return b"".join(
            pack_command("SSUBSCRIBE", *names) for names in by_slot.values()
        )

    async def _wait_connected(self) -> None:
        """Return once connected; raise at once while Redis is known to be
        down, or when the first attempt takes too long."""
        if self._reader is None:
            self._reader = self._tasks.spawn(self._run())
        deadline = asyncio.get_running_loop().time() + _CONFIRM_TIMEOUT
        while not self._connected.is_set():
            if self._error is not None:
                raise RedisConnectionError(
                    f"Redis at {self._lane.description} is unreachable, cannot "
                    f"subscribe: {self._error}"
                )
            self._attempted.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            attempt = asyncio.ensure_future(self._attempted.wait())
            try:
                # Not wait_for: see subscribe().
                await asyncio.wait({attempt}, timeout=max(remaining, 0))
            finally:
                attempt.cancel()
            if not self._attempted.is_set():
                raise RedisConnectionError(
                    f"Redis at {self._lane.description} did not answer within "
                    f"{_CONFIRM_TIMEOUT:g}s: cannot subscribe"
                )

    async def _send(self, *args: Any) -> None:
        connection = self._connection
        if connection is None or not connection.is_connected:
            raise RedisConnectionError(
                f"Lost the subscription connection to {self._lane.description}"
            )
        await connection.send_packed_command(pack_command(*args), check_health=False)

    async def _send_quietly(self, *args: Any) -> None:
        try:
            await self._send(*args)
        except CONNECTION_ERRORS:
            pass  # A reconnect subscribes only to what is still wanted.

    async def _send_unsubscribe(self, name: str) -> None:
        if name in self.wanted:
            return  # Subscribed again before this ran: nothing to undo.
        if self._sharded and self._connection is not None:
            # Counted before the write, so the reader cannot see the reply
            # first; the count belongs to this connection (reset on the next).
            self._own_unsubscribes[name] = self._own_unsubscribes.get(name, 0) + 1
        await self._send_quietly(self._unsubscribe_command, name)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self._tasks.spawn(coroutine)

    def _task_failed(self, failure: BaseException) -> None:
        # Connection errors are retried inside; this is a bug.
        logger.error(
            "A subscription task for Redis at %s failed",
            self._lane.description,
            exc_info=failure,
        )

    async def _run(self) -> None:
        backoff = Backoff(base=0.1, cap=_BACKOFF_CAP)
        reached = False  # "Lost" only once a connection was made
        while True:
            connection = self._lane.new_connection()
            try:
                await self._lane.connect(connection)
                if self.wanted:
                    await connection.send_packed_command(
                        self._subscribe_all(), check_health=False
                    )
                self._own_unsubscribes = {}
                self._connection = connection
                reached = True
                self._error = None
                self._connected.set()
                self._attempted.set()
                if backoff.failures:
                    logger.info(
                        "Reconnected to Redis at %s; subscribed again to %d channel(s)",
                        self._lane.description,
                        len(self.wanted),
                    )
                    await self._call(self._on_reconnect)
                backoff.reset()
                watchdog = asyncio.get_running_loop().create_task(
                    self._watch(connection)
                )
                try:
                    await self._read(connection)
                finally:
                    watchdog.cancel()
                    await asyncio.gather(watchdog, return_exceptions=True)
            except CONNECTION_ERRORS as error:
                self._connected.clear()
                self._connection = None
                self._error = error
                self._attempted.set()
                await self._lane.discard(connection)
                if backoff.failures == 0:
                    logger.warning(
                        "Lost the subscription connection to Redis at %s (%s); "
                        "reconnecting"
                        if reached
                        else "Cannot reach Redis at %s to subscribe (%s); retrying",
                        self._lane.description,
                        error,
                    )
                    await self._call(self._on_disconnect)
                await asyncio.sleep(backoff.next_delay())
            except BaseException:
                self._connected.clear()
                self._connection = None
                await asyncio.shield(self._lane.discard(connection))
                raise

    async def _read(self, connection: AbstractConnection) -> None:
        while True:
            try:
                reply = await connection.read_response()
            except ResponseError as error:
                # A subscription this node refused (sharded only: the
                # channel's slot is elsewhere). Anything else is a surprise:
                # reconnect, which subscribes to everything again.
                if not self._sharded or not isinstance(error, MovedError):
                    raise RedisConnectionError(
                        f"Redis at {self._lane.description} refused a "
                        f"subscription: {error}"
                    ) from error
                self._lose(
                    {n for n in self.wanted if slot_of(n) == error.slot_id}, error
                )
                continue
            self._heard_at = time.monotonic()
            self._pinged = False
            kind = reply[0]
            if kind == self._message_kind:
                self._on_message(reply[1].decode("utf-8"), reply[2])
            elif kind == self._confirm_kind:
                for waiter in self._confirmations.pop(reply[1].decode("utf-8"), ()):
                    if not waiter.done():
                        waiter.set_result(None)
            elif kind == b"sunsubscribe":
                name = reply[1].decode("utf-8")
                own = self._own_unsubscribes.get(name, 0)
                if own:
                    # The answer to our SUNSUBSCRIBE (sent before any new
                    # SSUBSCRIBE of the channel, whose reply comes after).
                    if own == 1:
                        del self._own_unsubscribes[name]
                    else:
                        self._own_unsubscribes[name] = own - 1
                elif name in self.wanted:
                    # Not asked for: the node no longer serves its slot.
                    self._lose({name}, None)

    def _lose(self, names: set[str], error: BaseException | None) -> None:
        """Forget ``names``, which this node no longer serves; waiting
        subscribe() calls fail with ``error``; ``on_lost`` gets the names."""
        self.wanted -= names
        for name in names:
            for waiter in self._confirmations.pop(name, ()):
                if not waiter.done():
                    waiter.set_exception(
                        error
                        or RedisConnectionError(
                            f"Redis at {self._lane.description} no longer "
                            f"serves {name!r}"
                        )
                    )
        if names and self._on_lost is not None:
            self._on_lost(names)

    async def _watch(self, connection: AbstractConnection) -> None:
        while True:
            await asyncio.sleep(_HEALTH_INTERVAL)
            if time.monotonic() - self._heard_at < _HEALTH_INTERVAL:
                continue
            if self._pinged:
                logger.warning(
                    "Redis at %s stopped answering; reconnecting",
                    self._lane.description,
                )
                await connection.disconnect(nowait=True)
                return
            self._pinged = True
            await self._send_quietly("PING")

    async def _call(self, callback: Callable[[], Any] | None) -> None:
        if callback is None:
            return
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_disconnect/on_reconnect callback failed")

    async def aclose(self) -> None:
        """Stop reading and close the connection; subscriptions are dropped."""
        self.wanted.clear()
        self._reader = None
        await self._tasks.aclose()
        for waiters in self._confirmations.values():
            for waiter in waiters:
                waiter.cancel()
        self._confirmations.clear()
