"""Faults: Redis going away and coming back under a live server, and
handlers that raise.

The Redis tests start their own ``redis-server`` (no persistence), kill it
with SIGKILL during traffic, and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.parse
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.exceptions
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from achannels.layers.redis import RedisChannelLayer
from tests.support.redis import PrivateRedis, private_redis, unique_prefix
from tests.support.reliability import (
    APP,
    TIMEOUT,
    closed_with,
    fetch_json,
    report,
    wait_for_numbers,
)
from tests.support.servers import RunningServer, serve

#: How long a caller may wait for the layer to say Redis is down.
FAIL_FAST = 5.0


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def send_note(server: RunningServer, channel: str, text: str) -> None:
    """Send a note to ``channel`` through the server, retrying while the
    server answers 500 (its layer still reconnecting)."""
    url = (
        f"{server.url}/send/{urllib.parse.quote(channel, safe='!')}/"
        f"?text={urllib.parse.quote(text)}"
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await fetch_json(url)
            return
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_redis_restart_under_live_server_errors_clearly_then_recovers(
    redis_server: PrivateRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "RELIABILITY_LAYER": "redis",
        "RELIABILITY_REDIS_URL": redis_server.url,
        "RELIABILITY_REDIS_PREFIX": unique_prefix(),
        "PYTHONWARNINGS": "always::ResourceWarning",
    }
    with serve(APP, "uvicorn-wsproto", env=env) as server:
        member = f"{server.ws_url}/ws/member/fault/"
        async with (
            connect(f"{server.ws_url}/ws/announce/", open_timeout=TIMEOUT) as idle,
            connect(member, open_timeout=TIMEOUT) as alice,
            connect(member, open_timeout=TIMEOUT) as bob,
        ):
            idle_channel = str(await recv(idle))
            await alice.send("before")
            assert [await recv(alice), await recv(bob)] == ["before", "before"]

            redis_server.stop()

            # A handler that needs Redis fails promptly with a clear error:
            # its socket closes 1011 and the log names the server.
            started = time.monotonic()
            await alice.send("during")
            assert (await closed_with(alice))[0] == 1011
            failed_after = time.monotonic() - started
            assert failed_after < FAIL_FAST
            output = await asyncio.to_thread(
                server.wait_for_output, "Redis channel layer cannot reach"
            )
            assert f"127.0.0.1:{redis_server.port}" in output
            # A handshake that needs Redis is refused, not left hanging.
            with pytest.raises(InvalidStatus):
                await connect(member, open_timeout=TIMEOUT)
            # Sockets that do not need Redis right now are untouched.
            for ws in (idle, bob):
                await asyncio.wait_for(await ws.ping(), TIMEOUT)

            redis_server.start()

            # The idle consumer's receive loop resumed by itself.
            started = time.monotonic()
            await send_note(server, idle_channel, "back")
            assert await recv(idle) == "back"
            resumed_after = time.monotonic() - started
            # New members meet in a group again.
            async with (
                connect(member, open_timeout=TIMEOUT) as carol,
                connect(member, open_timeout=TIMEOUT) as dave,
            ):
                await carol.send("after")
                assert [await recv(carol), await recv(dave)] == ["after", "after"]
                # Bob's membership went with Redis's data (no persistence),
                # but his consumer works: what he says reaches the group.
                await bob.send("bob is fine")
                assert [await recv(carol), await recv(dave)] == ["bob is fine"] * 2
        output = await asyncio.to_thread(server.stop)
    report(
        capsys,
        f"Redis killed under a live server: the handler needing it closed 1011 "
        f"after {failed_after:.2f}s; after the restart an idle consumer got a "
        f"message {resumed_after:.2f}s after the first try",
    )
    assert "reliability layer closed" in output
    for complaint in ("Task was destroyed", "unclosed", "was never awaited"):
        assert complaint not in output, output


@pytest.fixture
async def layer(redis_server: PrivateRedis) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_server.url], prefix=unique_prefix())
    try:
        yield layer
    finally:
        await layer.close()


async def test_layer_raises_connection_error_while_down_and_resumes(
    layer: RedisChannelLayer, redis_server: PrivateRedis
) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "m", "n": 1})
    assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["n"] == 1
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.1)

    redis_server.stop()
    for call in (
        layer.send(channel, {"type": "m"}),
        layer.group_add("room", channel),
        layer.group_send("room", {"type": "m"}),
    ):
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError, match="cannot reach"):
            await asyncio.wait_for(call, TIMEOUT)
        assert time.monotonic() - started < FAIL_FAST
    # The receiver keeps waiting instead of failing.
    await asyncio.sleep(0.5)
    assert not waiting.done()

    redis_server.start()
    await layer.send(channel, {"type": "m", "n": 2})
    assert (await asyncio.wait_for(waiting, TIMEOUT))["n"] == 2
    await layer.group_add("room", channel)
    await layer.group_send("room", {"type": "m", "n": 3})
    assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["n"] == 3


# Handlers that raise


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind) as running:
        yield running


async def test_raising_handler_closes_1011_cleans_up_and_spares_others(
    server: RunningServer,
) -> None:
    member = f"{server.ws_url}/ws/member/crash/"
    async with (
        connect(member, open_timeout=TIMEOUT) as alice,
        connect(member, open_timeout=TIMEOUT) as bob,
    ):
        await wait_for_numbers(server, {"group_members": {"crash": 2}})
        await alice.send("boom")
        assert (await closed_with(alice))[0] == 1011
        # The crashed consumer left its group (disconnect ran) and is gone.
        await wait_for_numbers(
            server, {"group_members": {"crash": 1}, "consumers": 1, "channels": 1}
        )
        await bob.send("still talking")
        assert await recv(bob) == "still talking"
    output = await asyncio.to_thread(server.stop)
    assert output.count("RuntimeError: boom in group crash") == 1, output
