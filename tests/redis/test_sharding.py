"""Sharding over two Redis servers (the shared one and a private one the test
starts), the same way channels_redis shards, so both find every key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import (
    PrivateRedis,
    private_redis,
    require_redis,
    unique_prefix,
)

channels_redis_core = pytest.importorskip("channels_redis.core")
channels_redis_utils = pytest.importorskip("channels_redis.utils")

pytestmark = pytest.mark.redis


@pytest.fixture
def second() -> Iterator[PrivateRedis]:
    with private_redis() as running:
        yield running


@pytest.fixture
def config(second: PrivateRedis) -> dict[str, Any]:
    return {"hosts": [require_redis(), second.url], "prefix": unique_prefix()}


@pytest.fixture
async def layer(config: dict[str, Any]) -> AsyncIterator[RedisChannelLayer]:
    channel_layer = RedisChannelLayer(**config)
    yield channel_layer
    await channel_layer.flush()
    await channel_layer.close()


def test_shard_choice_matches_channels_redis() -> None:
    layer = RedisChannelLayer(hosts=["redis://a:1", "redis://b:2", "redis://c:3"])
    for name in ["room", "specific.abc!", "x" * 90, "chat-42", "ünïcode"]:
        assert layer.consistent_hash(name) == channels_redis_utils._consistent_hash(
            name, 3
        )


async def test_groups_and_channels_spread_over_both_servers(
    layer: RedisChannelLayer, second: PrivateRedis
) -> None:
    groups = [f"room{index}" for index in range(16)]
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    for index in range(16):
        await layer.send(f"queue{index}", {"type": "m"})
    shared_keys = await layer._states.get().lanes[0].execute("KEYS", layer.prefix + "*")
    assert shared_keys, "nothing on the first server"
    client = second.client()
    assert client.keys(layer.prefix + "*"), "nothing on the second server"
    client.close()
    for group in groups:
        await layer.group_send(group, {"type": "chat", "group": group})
    got = [await asyncio.wait_for(layer.receive(channel), 5) for _ in groups]
    assert sorted(message["group"] for message in got) == sorted(groups)
    for index in range(16):
        assert (await asyncio.wait_for(layer.receive(f"queue{index}"), 5)) == {
            "type": "m"
        }


async def test_sharded_group_send_reaches_members_of_two_processes(
    layer: RedisChannelLayer, config: dict[str, Any]
) -> None:
    other = RedisChannelLayer(**config)
    try:
        mine = [await layer.new_channel() for _ in range(5)]
        theirs = [await other.new_channel() for _ in range(5)]
        for channel in mine + theirs:
            await layer.group_add("room", channel)
        await other.group_send("room", {"type": "chat"})
        for channel in mine:
            assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "chat"}
        for channel in theirs:
            assert await asyncio.wait_for(other.receive(channel), 5) == {"type": "chat"}
    finally:
        await other.close()


async def test_sharded_channels_redis_sends_reach_achannels_receivers(
    layer: RedisChannelLayer, config: dict[str, Any]
) -> None:
    # channels_redis's send() shards a specific channel by its full name
    # while its receivers read the shard of the shared part; achannels reads
    # every shard, so none of these messages is lost.
    theirs = channels_redis_core.RedisChannelLayer(**config)
    try:
        channels = [await layer.new_channel() for _ in range(12)]
        for index, channel in enumerate(channels):
            await theirs.send(channel, {"type": "m", "i": index})
            await theirs.group_add("room", channel)
        for index, channel in enumerate(channels):
            assert (await asyncio.wait_for(layer.receive(channel), 5))["i"] == index
        await theirs.group_send("room", {"type": "all"})
        for channel in channels:
            assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "all"
    finally:
        await theirs.flush()


async def test_sharded_pubsub_group_send_reaches_members(
    config: dict[str, Any],
) -> None:
    first = RedisPubSubChannelLayer(**config)
    second_process = RedisPubSubChannelLayer(**config)
    try:
        groups = [f"room{index}" for index in range(8)]
        channel = await first.new_channel()
        for group in groups:
            await first.group_add(group, channel)
        for group in groups:
            await second_process.group_send(group, {"type": "chat", "group": group})
        got = [await asyncio.wait_for(first.receive(channel), 5) for _ in groups]
        assert sorted(message["group"] for message in got) == sorted(groups)
    finally:
        await first.close()
        await second_process.close()
