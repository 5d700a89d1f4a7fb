"""Connections to one Redis server from one event loop, with retries.

A :class:`Lane` keeps idle redis-py connections and runs one command per
borrowed connection. It sidesteps redis-py's client and pool bookkeeping on
the per-message path (the pool is still what builds connections, so URL
options, TLS and Sentinel all work). A connection whose command was
interrupted is discarded, never reused with a reply still unread.

The pump and the subscriber, which hold a connection of their own, share
:class:`Backoff` (delays between reconnects), :func:`pack_command` (RESP
encoding) and :data:`CONNECTION_ERRORS` with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._hosts import HostSpec, cluster_seeds, create_pool, describe_host

__all__ = [
    "CONNECTION_ERRORS",
    "Backoff",
    "Lane",
    "pack_command",
    "read_reply",
    "unreachable",
]

logger = logging.getLogger("achannels.layers.redis")

#: What a lost or refused connection raises (OSError covers resets that
#: redis-py lets through on some paths).
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

# A command that meets a dead connection (Redis restarted) is retried on a new
# one, a few times with a short jittered backoff, so callers fail within about
# a second while Redis is down instead of hanging.
_ATTEMPTS = 4
_MAX_IDLE = 32
# Commands in flight at once per lane (each on its own connection); more
# wait for one to finish. Without a bound, a thousand clients leaving at once
# open a thousand connections, whose connects then time out.
_MAX_IN_FLIGHT = 64


def pack_command(*args: Any) -> bytes:
    """Return ``args`` as one RESP command (an array of bulk strings).

    str is UTF-8, int and float are written in decimal (``repr`` keeps a
    float exact); bytes go as they are.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        elif isinstance(arg, (int, float)):
            data = repr(arg).encode("ascii")
        else:
            raise TypeError(f"Cannot send {type(arg).__name__} to Redis")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class Backoff:
    """Exponential delays with jitter: ``base``, ``2 * base``, ... up to
    ``cap`` seconds, each scaled by a random factor in ``[0.5, 1)``."""

    __slots__ = ("_failures", "base", "cap")

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self._failures = 0

    @property
    def failures(self) -> int:
        """How many delays were handed out since the last :meth:`reset`."""
        return self._failures

    def next_delay(self) -> float:
        """Return the next delay and count a failure."""
        delay = min(self.cap, self.base * (2**self._failures))
        self._failures += 1
        return float(delay * (0.5 + random.random() / 2))

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self._failures = 0


class Lane:
    """Commands to one Redis server from the event loop that created it."""

    def __init__(self, host: HostSpec) -> None:
        self.description = describe_host(host)
        self._pool: ConnectionPool = create_pool(host)
        kwargs = self._pool.connection_kwargs
        #: Seconds a reply may take; ``None`` waits forever.
        self.timeout: float | None = kwargs.get("socket_timeout")
        connect_timeout = kwargs.get("socket_connect_timeout")
        #: Seconds connecting (TCP and the handshake) may take: as in
        #: redis-py, ``socket_connect_timeout``, else ``socket_timeout``.
        self.connect_timeout: float | None = (
            self.timeout if connect_timeout is None else connect_timeout
        )
        self._idle: list[AbstractConnection] = []
        self._busy: set[AbstractConnection] = set()
        self._in_flight = asyncio.Semaphore(_MAX_IN_FLIGHT)
        self._closed = False

    def new_connection(self) -> AbstractConnection:
        """Return a new, unconnected connection the caller owns and must
        :meth:`discard`."""
        if self._closed:
            raise RedisConnectionError(
                f"Redis channel layer connections to {self.description} are closed"
            )
        connection: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        # Timeouts are applied per read (and to connecting) by this module:
        # redis-py wraps every write in a new task when socket_timeout is set.
        connection.socket_timeout = None
        self._busy.add(connection)
        return connection

    async def connect(self, connection: AbstractConnection) -> None:
        """Connect ``connection`` (handshake included) within
        :attr:`connect_timeout`; raises redis' ``TimeoutError`` after that.

        Raises :class:`redis.exceptions.ConnectionError` for a connection
        that reached its own socket (see :func:`_connected_to_itself`).
        """
        connect = connection.connect()  # type: ignore[no-untyped-call]
        # The handshake's replies are read with no timeout of their own (see
        # new_connection): this bound is all that stops a server that
        # accepts but never answers from holding the caller forever.
        if self.connect_timeout is None:
            await connect
        else:
            try:
                await asyncio.wait_for(connect, self.connect_timeout)
            except asyncio.TimeoutError:
                raise RedisTimeoutError(
                    f"Timed out connecting to {self.description}"
                ) from None
        if _connected_to_itself(connection):
            await connection.disconnect(nowait=True)
            raise RedisConnectionError(
                f"Nothing listens at {self.description}: the connection "
                "reached its own socket (a TCP self-connection)"
            )

    async def discard(self, connection: AbstractConnection) -> None:
        """Close ``connection`` and forget it."""
        self._busy.discard(connection)
        await connection.disconnect(nowait=True)

    async def _release(self, connection: AbstractConnection) -> None:
        self._busy.discard(connection)
        if len(self._idle) < _MAX_IDLE and not self._closed:
            self._idle.append(connection)
        else:
            await connection.disconnect(nowait=True)

    def _checkout(self) -> AbstractConnection:
        """An idle connection, or a new one, marked busy; connected inside
        the caller's ``try``, so a failed connect is retried as a failed
        command is."""
        connection = self._idle.pop() if self._idle else self.new_connection()
        self._busy.add(connection)
        return connection

    async def _retry_after(
        self,
        connection: AbstractConnection,
        error: Exception,
        backoff: Backoff,
        attempts: int,
    ) -> None:
        """Drop ``connection`` after it failed with ``error``; wait out the
        backoff before the next try, or raise naming the server once
        ``attempts`` tries failed (or the lane was closed)."""
        await self.discard(connection)
        if backoff.failures + 1 >= attempts or self._closed:
            raise RedisConnectionError(
                f"Redis channel layer cannot reach {self.description} "
                f"(tried {backoff.failures + 1} times): {error}"
            ) from error
        await asyncio.sleep(backoff.next_delay())

    async def execute(self, *args: Any, attempts: int = _ATTEMPTS) -> Any:
        """Run one command and return its reply.

        Retries on a new connection when the connection fails, with backoff,
        up to ``attempts`` tries in all; raises
        :class:`redis.exceptions.ConnectionError` naming the server when it
        stays unreachable, and the server's error reply as
        :class:`redis.exceptions.ResponseError`.
        """
        backoff = Backoff(base=0.05, cap=0.5)
        async with self._in_flight:
            while True:
                connection = self._checkout()
                try:
                    if not connection.is_connected:
                        await self.connect(connection)
                    await connection.send_packed_command(
                        pack_command(*args), check_health=False
                    )
                    reply = await read_reply(connection, self.timeout)
                except ResponseError:
                    # An error reply is a whole reply: the connection is fine.
                    await self._release(connection)
                    raise
                except (RedisConnectionError, OSError) as error:
                    await self._retry_after(connection, error, backoff, attempts)
                    continue
                except BaseException:
                    # Cancelled or timed out mid-command: a reply may still be on
                    # the wire, so this connection must not serve another command.
                    await asyncio.shield(self.discard(connection))
                    raise
                await self._release(connection)
                return reply

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip (a pipeline on one connection)
        and return their replies in order; an error reply is returned as its
        :class:`redis.exceptions.ResponseError` instead of raised, so one
        failed command does not hide the others' replies.

        Connection failures are retried as in :meth:`execute` (the whole
        batch again, so a command may run twice when the link dropped after
        Redis ran it, as a retried :meth:`execute` may).
        """
        packed = b"".join(pack_command(*command) for command in commands)
        backoff = Backoff(base=0.05, cap=0.5)
        async with self._in_flight:
            while True:
                connection = self._checkout()
                replies: list[Any] = []
                try:
                    if not connection.is_connected:
                        await self.connect(connection)
                    await connection.send_packed_command(packed, check_health=False)
                    for _ in commands:
                        try:
                            replies.append(await read_reply(connection, self.timeout))
                        except ResponseError as error:
                            replies.append(error)
                except (RedisConnectionError, OSError) as error:
                    await self._retry_after(connection, error, backoff, _ATTEMPTS)
                    continue
                except BaseException:
                    await asyncio.shield(self.discard(connection))
                    raise
                await self._release(connection)
                return replies

    async def aclose(self) -> None:
        """Close every connection of this lane; later commands fail."""
        self._closed = True
        connections = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            await connection.disconnect(nowait=True)
        await self._pool.disconnect()
        # A Sentinel pool also holds clients of the sentinels themselves.
        manager = getattr(self._pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.connection_pool.disconnect()


async def read_reply(connection: AbstractConnection, timeout: float | None) -> Any:
    """Read one reply within ``timeout`` seconds (``None``: no limit).

    A reply later than that disconnects ``connection`` and raises redis'
    ``TimeoutError``: still on its way, it would otherwise be read as the
    reply to the connection's next command. (redis-py's own per-read
    ``timeout=`` returns ``None`` and keeps the connection; its
    ``socket_timeout``, applied here to this one read only, does not.)
    """
    connection.socket_timeout = timeout
    try:
        return await connection.read_response()
    finally:
        connection.socket_timeout = None


def _connected_to_itself(connection: AbstractConnection) -> bool:
    """Whether ``connection``'s socket is connected to itself.

    Connecting to a local port nobody listens on (a Redis that died, say a
    killed cluster master) that lies in the ephemeral range sometimes gets
    that very port as the local one, and TCP joins the socket to itself
    (about one connect in 5000 here). Every command then reads back as its
    own reply: a pump that parses one dies, a ``CLUSTER SLOTS`` yields
    garbage, a script returns its arguments.
    """
    # redis-py keeps its stream writer private; without one there is no
    # TCP socket to check (a Unix socket cannot connect to itself).
    writer = getattr(connection, "_writer", None)
    if writer is None:
        return False
    local = writer.get_extra_info("sockname")
    return local is not None and local == writer.get_extra_info("peername")


async def unreachable(hosts: list[HostSpec]) -> list[str]:
    """Why each of ``hosts`` that does not answer a PING cannot be reached
    (for the startup check); an empty list when all answer."""
    problems: list[str] = []
    for host in hosts:
        if "cluster" in host:
            # A cluster is reachable when one of its seeds answers.
            seeds = cluster_seeds(host)
            errors = [await _ping(seed) for seed in seeds]
            if all(errors):
                problems.append(
                    f"No seed of the {describe_host(host)} answers: "
                    + "; ".join(e for e in errors if e)
                )
            continue
        error = await _ping(host)
        if error:
            problems.append(error)
    return problems


async def _ping(host: HostSpec) -> str | None:
    """Return why ``host`` does not answer a PING, or ``None``."""
    lane = Lane(host)
    try:
        await lane.execute("PING")
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        return str(error)
    except ResponseError:
        pass  # it answered (NOAUTH and the like surface on first use)
    finally:
        await lane.aclose()
    return None
