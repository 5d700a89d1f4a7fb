"""A lane's connections and a pump's: a late reply never answers the next
command, a crowd of commands shares a bounded number of connections,
connecting is bounded by ``socket_connect_timeout``, and a pump survives a
reply it cannot parse or an error reply to what it puts back.


redis-py's per-read ``timeout=`` returns ``None`` when it expires and keeps
the connection, the late reply still on its way: a connection reused after
that reads each command's reply to the one before (seen in the benchmarks as
``group_send`` reading a ``ZREM`` count). These tests talk to a fake server
whose ``SLOW`` command answers late (and whose other answers are scripted),
so no real Redis is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from achannels.layers.redis._connection import _MAX_IN_FLIGHT, Lane
from achannels.layers.redis._pump import Entry, Pump

#: The lane's read timeout; ``SLOW`` answers well after it.
TIMEOUT = 1.0
LATE = 2.0


class FakeRedis:
    """Counts the connections open at once (``most``) and ever made
    (``made``); ``pops`` are the raw replies the next ``BZMPOP`` commands get."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.made = 0
        self.pops: list[bytes] = []


async def answer(
    fake: FakeRedis, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve RESP2 arrays: ``SLOW`` gets ``+late`` after ``LATE`` seconds,
    ``BRIEF`` ``+brief`` after a moment, the connection handshake ``+OK``,
    ``BZMPOP`` the next of ``fake.pops`` (a timeout, after a moment, when
    none is left), ``ZADD`` an out-of-memory error, anything else
    ``+fast``."""
    fake.open += 1
    fake.made += 1
    fake.most = max(fake.most, fake.open)
    try:
        while header := await reader.readline():
            assert header.startswith(b"*"), header
            words = []
            for _ in range(int(header[1:])):
                await reader.readline()  # $<length>
                words.append((await reader.readline()).rstrip(b"\r\n").upper())
            if words[0] == b"SLOW":
                await asyncio.sleep(LATE)
                writer.write(b"+late\r\n")
            elif words[0] == b"BRIEF":
                await asyncio.sleep(0.02)
                writer.write(b"+brief\r\n")
            elif words[0] == b"BZMPOP":
                if fake.pops:
                    writer.write(fake.pops.pop(0))
                else:
                    await asyncio.sleep(0.05)
                    writer.write(b"*-1\r\n")
            elif words[0] == b"ZADD":
                writer.write(
                    b"-OOM command not allowed when used memory > 'maxmemory'\r\n"
                )
            elif words[0] in (b"CLIENT", b"HELLO", b"SELECT"):
                writer.write(b"+OK\r\n")
            else:
                writer.write(b"+fast\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client hung up, or the test ended
    finally:
        fake.open -= 1
        writer.close()


@pytest.fixture
def fake() -> FakeRedis:
    return FakeRedis()


@pytest.fixture
async def port(fake: FakeRedis) -> AsyncIterator[int]:
    server = await asyncio.start_server(
        lambda reader, writer: answer(fake, reader, writer), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def open_lane(port: int, timeout: float) -> AsyncIterator[Lane]:
    lane = Lane({"address": f"redis://127.0.0.1:{port}", "socket_timeout": timeout})
    try:
        yield lane
    finally:
        await lane.aclose()


@pytest.fixture
async def lane(port: int) -> AsyncIterator[Lane]:
    async with open_lane(port, TIMEOUT) as lane:
        yield lane


async def test_a_late_reply_raises_and_does_not_answer_the_next_command(
    lane: Lane,
) -> None:
    with pytest.raises(RedisTimeoutError, match="Timeout reading"):
        await lane.execute("SLOW")
    await asyncio.sleep(LATE)  # the late reply has arrived by now
    assert await lane.execute("PING") == b"fast"
    assert await lane.execute("PING") == b"fast"


async def test_a_late_reply_in_a_pipeline_raises_and_does_not_answer_the_next(
    lane: Lane,
) -> None:
    with pytest.raises(RedisTimeoutError, match="Timeout reading"):
        await lane.execute_many([("PING",), ("SLOW",), ("PING",)])
    await asyncio.sleep(LATE)
    assert await lane.execute_many([("PING",), ("PING",)]) == [b"fast", b"fast"]


async def test_a_crowd_of_commands_shares_a_bounded_set_of_connections(
    port: int, fake: FakeRedis
) -> None:
    # A thousand clients leaving a group at once, say. (Connecting shares the
    # read timeout, which the late-reply tests keep short.)
    async with open_lane(port, 10.0) as lane:
        replies = await asyncio.gather(*(lane.execute("BRIEF") for _ in range(1000)))
    assert replies == [b"brief"] * 1000
    assert 1 < fake.most <= _MAX_IN_FLIGHT


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts TCP connections and never answers (a stuck
    proxy, a host whose Redis hangs)."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_connecting_to_a_silent_server_gives_up_after_socket_connect_timeout(
    silent_port: int,
) -> None:
    # No read timeout at all (redis-py users set only the connect timeout):
    # the handshake's reply never comes, and only the connect timeout can
    # end the wait. The outer deadline fails the test instead of hanging.
    lane = Lane(
        {
            "address": f"redis://127.0.0.1:{silent_port}",
            "socket_timeout": None,
            "socket_connect_timeout": 0.5,
        }
    )
    try:
        async with asyncio.timeout(30):
            with pytest.raises(RedisTimeoutError, match="Timed out connecting"):
                await lane.execute("PING")
    finally:
        await lane.aclose()


#: A ``BZMPOP`` reply that pops one message, ``kept``, with score 1.
KEPT_POP = b"*2\r\n$3\r\nkey\r\n*1\r\n*2\r\n$4\r\nkept\r\n$1\r\n1\r\n"


async def pump_until(pump: Pump, done: asyncio.Event) -> None:
    """Run ``pump`` until ``done`` is set; fail if the pump ends first."""
    running = asyncio.ensure_future(pump.run())
    waiting = asyncio.ensure_future(done.wait())
    try:
        async with asyncio.timeout(30):
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        assert not running.done(), running.exception()
    finally:
        for task in (running, waiting):
            task.cancel()
        await asyncio.wait({running, waiting})


async def test_a_pump_drops_a_connection_that_answers_oddly_and_goes_on(
    lane: Lane, fake: FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # Three pops answered with shapes BZMPOP never has (a status, a key
    # with a string for entries, entries that are not pairs), then a real one.
    fake.pops = [
        b"+fast\r\n",
        b"*2\r\n$3\r\nkey\r\n$2\r\nab\r\n",
        b"*2\r\n$3\r\nkey\r\n*1\r\n$2\r\nab\r\n",
        KEPT_POP,
    ]
    delivered: list[Entry] = []
    arrived = asyncio.Event()

    def deliver(entries: list[Entry]) -> list[Entry]:
        delivered.extend(entries)
        arrived.set()
        return []

    pump = Pump(lane, "asgi:specific.test!", deliver, local=True)
    with caplog.at_level(logging.INFO, "achannels.layers.redis"):
        await pump_until(pump, arrived)
    # What came after the odd replies was delivered, each odd reply's
    # connection was replaced, and one line said what happened.
    assert delivered == [(b"kept", b"1")]
    assert fake.made == 4
    odd = [r for r in caplog.records if "Unexpected reply" in r.getMessage()]
    assert len(odd) == 1, [r.getMessage() for r in caplog.records]
    assert odd[0].levelno == logging.ERROR
    assert "BZMPOP answered b'fast'" in odd[0].getMessage()


async def test_a_pump_goes_on_when_redis_refuses_what_it_puts_back(
    lane: Lane, fake: FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # A shared channel's pump returns what nobody took; a full Redis refuses
    # the ZADD with an error reply, which must not end the pump.
    fake.pops = [KEPT_POP, KEPT_POP]
    offered: list[list[Entry]] = []
    second = asyncio.Event()

    def deliver(entries: list[Entry]) -> list[Entry]:
        offered.append(entries)
        if len(offered) == 2:
            second.set()
        return entries  # nobody took them

    pump = Pump(lane, "asgi:shared", deliver)
    with caplog.at_level(logging.INFO, "achannels.layers.redis"):
        await pump_until(pump, second)
    assert offered == [[(b"kept", b"1")]] * 2
    lost = [r.getMessage() for r in caplog.records if "they are lost" in r.getMessage()]
    assert lost and "maxmemory" in lost[0], lost
