"""A lane's connections: a late reply never answers the next command, and
a crowd of commands shares a bounded number of connections, connecting is
bounded by ``socket_connect_timeout``, and a pump survives a reply it
cannot parse.


redis-py's per-read ``timeout=`` returns ``None`` when it expires and keeps
the connection, the late reply still on its way: a connection reused after
that reads each command's reply to the one before (seen in the benchmarks as
``group_send`` reading a ``ZREM`` count). These tests talk to a fake server
whose ``SLOW`` command answers late, so no real Redis is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from achannels.layers.redis._connection import _MAX_IN_FLIGHT, Lane

#: The lane's read timeout; ``SLOW`` answers well after it.
TIMEOUT = 1.0
LATE = 2.0


class FakeRedis:
    """Counts the connections open at once (``most``)."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0


async def answer(
    fake: FakeRedis, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve RESP2 arrays: ``SLOW`` gets ``+late`` after ``LATE`` seconds,
    ``BRIEF`` ``+brief`` after a moment, the connection handshake ``+OK``,
    anything else ``+fast``."""
    fake.open += 1
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
