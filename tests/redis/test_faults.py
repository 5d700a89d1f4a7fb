"""Redis going away and coming back during traffic, on a redis-server the
test owns: callers get a clear error quickly, receivers resume, the pub/sub
layer subscribes again to every channel and group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import redis
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import PrivateRedis, private_redis, unique_prefix

pytestmark = pytest.mark.redis

# Reconnection backs off to one attempt every 2 s; allow for a loaded machine.
RECOVERY = 15.0


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    with private_redis() as running:
        yield running


async def fails_fast(call: Any) -> float:
    """Await ``call`` expecting a ConnectionError; return how long it took."""
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match=r"127\.0\.0\.1"):
        await asyncio.wait_for(call, 10)
    return time.monotonic() - started


async def until_succeeds(call: Any, timeout: float = RECOVERY) -> Any:
    """Retry ``call()`` until it stops raising ConnectionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_core_layer_survives_redis_restart_during_traffic(
    server: PrivateRedis,
) -> None:
    layer = RedisChannelLayer(hosts=[server.url], prefix=unique_prefix())
    try:
        channel = await layer.new_channel()
        received: asyncio.Queue[int] = asyncio.Queue()
        sent_after_restart: list[int] = []
        restarted = asyncio.Event()
        enough = asyncio.Event()
        failures = 0

        async def consume() -> None:
            while True:
                received.put_nowait((await layer.receive(channel))["n"])

        async def produce() -> None:
            nonlocal failures
            number = 0
            while not enough.is_set():
                number += 1
                try:
                    await layer.send(channel, {"type": "m", "n": number})
                except redis.exceptions.ConnectionError:
                    failures += 1
                    continue
                if restarted.is_set():
                    sent_after_restart.append(number)
                    if len(sent_after_restart) == 20:
                        enough.set()
                await asyncio.sleep(0.005)

        consumer = asyncio.create_task(consume())
        producer = asyncio.create_task(produce())
        assert await asyncio.wait_for(received.get(), 5) == 1

        server.stop()
        assert await fails_fast(layer.send(channel, {"type": "m", "n": -1})) < 5
        assert await fails_fast(layer.group_add("room", channel)) < 5
        assert not consumer.done()  # the receiver waits for Redis to return

        server.start()
        restarted.set()
        await asyncio.wait_for(enough.wait(), RECOVERY)
        await producer
        assert failures > 0
        # Whatever was sent after the restart arrives, in order; what was in
        # the old server when it died is gone with it (no persistence).
        got: list[int] = []
        while len(got) < 20 or got[-20:] != sent_after_restart:
            got.append(await asyncio.wait_for(received.get(), RECOVERY))
        await until_succeeds(lambda: layer.group_add("room", channel))
        await layer.group_send("room", {"type": "m", "n": 1000})
        assert await asyncio.wait_for(received.get(), 5) == 1000
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    finally:
        await layer.close()


async def test_pubsub_layer_resubscribes_channels_and_groups_after_restart(
    server: PrivateRedis,
) -> None:
    events: list[str] = []

    async def on_reconnect() -> None:
        events.append("reconnect")

    layer = RedisPubSubChannelLayer(
        hosts=[server.url],
        prefix=unique_prefix(),
        on_disconnect=lambda: events.append("disconnect"),
        on_reconnect=on_reconnect,
    )
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        group_channel = f"{layer.prefix}__group__room"
        waiting = asyncio.create_task(layer.receive(channel))

        server.stop()
        assert await fails_fast(layer.group_send("room", {"type": "m"})) < 5
        assert await fails_fast(layer.new_channel()) < 5

        server.start()
        client = server.client()
        deadline = time.monotonic() + RECOVERY
        while time.monotonic() < deadline:
            counts = dict(client.pubsub_numsub(channel, group_channel))
            if all(counts.values()):
                break
            await asyncio.sleep(0.05)
        client.close()
        await layer.group_send("room", {"type": "to.group"})
        assert (await asyncio.wait_for(waiting, 5))["type"] == "to.group"
        await layer.send(channel, {"type": "direct"})
        assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "direct"
        assert events == ["disconnect", "reconnect"]
    finally:
        await layer.close()


async def test_operations_fail_fast_when_redis_was_never_there() -> None:
    vacant = PrivateRedis()  # a free port nobody listens on
    core = RedisChannelLayer(hosts=[vacant.url])
    pubsub = RedisPubSubChannelLayer(hosts=[vacant.url])
    try:
        assert await fails_fast(core.send("jobs", {"type": "m"})) < 5
        assert await fails_fast(core.group_send("room", {"type": "m"})) < 5
        assert await fails_fast(pubsub.new_channel()) < 5
        assert await fails_fast(pubsub.send("jobs", {"type": "m"})) < 5
    finally:
        await core.close()
        await pubsub.close()
