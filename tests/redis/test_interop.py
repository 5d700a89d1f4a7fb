"""Wire compatibility with channels_redis 4.3: both layer kinds, both
directions, with and without encryption, on one Redis and prefix -- what a
fleet sees while it migrates one process at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import require_redis, unique_prefix

channels_redis_core = pytest.importorskip("channels_redis.core")
channels_redis_pubsub = pytest.importorskip("channels_redis.pubsub")

pytestmark = pytest.mark.redis

KEYS = [None, ["interop-secret", "older-secret"]]
MESSAGE = {"type": "chat.message", "text": "héllo", "blob": b"\x00\xff", "n": [1, 2.5]}


class Pair:
    """An achannels layer and a channels_redis layer of one kind, sharing a
    Redis and a prefix."""

    def __init__(self, ours: Any, theirs: Any, pubsub: bool) -> None:
        self.ours = ours
        self.theirs = theirs
        self.pubsub = pubsub

    async def until_subscribed(self, name: str) -> None:
        """Wait until Redis counts a subscriber of ``name`` (channels_redis
        does not wait for its SUBSCRIBE to be confirmed)."""
        if not self.pubsub:
            return
        state = self.ours._states.get()
        for _ in range(500):
            reply = await state.lanes[0].execute("PUBSUB", "NUMSUB", name)
            if int(reply[1]) > 0:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"nobody subscribed to {name!r}")


@pytest.fixture(params=["core", "pubsub"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=KEYS, ids=["plain", "encrypted"])
async def pair(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    config: dict[str, Any] = {"hosts": [require_redis()], "prefix": unique_prefix()}
    if request.param is not None:
        config["symmetric_encryption_keys"] = request.param
    if kind == "core":
        ours: Any = RedisChannelLayer(**config)
        theirs: Any = channels_redis_core.RedisChannelLayer(**config)
    else:
        ours = RedisPubSubChannelLayer(**config)
        theirs = channels_redis_pubsub.RedisPubSubChannelLayer(**config)
    yield Pair(ours, theirs, kind == "pubsub")
    await theirs.flush()
    await ours.flush()
    await ours.close()


async def within(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, 5)


async def test_channels_redis_send_reaches_achannels_receiver(pair: Pair) -> None:
    channel = await pair.ours.new_channel()
    await pair.theirs.send(channel, MESSAGE)
    assert await within(pair.ours.receive(channel)) == MESSAGE


async def test_achannels_send_reaches_channels_redis_receiver(pair: Pair) -> None:
    channel = await pair.theirs.new_channel()
    await pair.until_subscribed(channel)
    await pair.ours.send(channel, MESSAGE)
    assert await within(pair.theirs.receive(channel)) == MESSAGE


async def test_channels_redis_group_send_reaches_achannels_members(
    pair: Pair,
) -> None:
    members = [await pair.ours.new_channel() for _ in range(3)]
    for channel in members:
        await pair.ours.group_add("room", channel)
    if not pair.pubsub:  # memberships are shared state only in the core layer
        theirs = await pair.theirs.new_channel()
        await pair.theirs.group_add("room", theirs)
    await pair.theirs.group_send("room", MESSAGE)
    for channel in members:
        assert await within(pair.ours.receive(channel)) == MESSAGE
    if not pair.pubsub:
        assert await within(pair.theirs.receive(theirs)) == MESSAGE


async def test_achannels_group_send_reaches_channels_redis_members(
    pair: Pair,
) -> None:
    members = [await pair.theirs.new_channel() for _ in range(3)]
    for channel in members:
        await pair.theirs.group_add("room", channel)
    await pair.until_subscribed(f"{pair.ours.prefix}__group__room")
    mine = await pair.ours.new_channel()
    await pair.ours.group_add("room", mine)
    await pair.ours.group_send("room", MESSAGE)
    for channel in members:
        assert await within(pair.theirs.receive(channel)) == MESSAGE
    assert await within(pair.ours.receive(mine)) == MESSAGE


async def test_plain_channels_and_groups_are_shared_both_ways() -> None:
    config: dict[str, Any] = {"hosts": [require_redis()], "prefix": unique_prefix()}
    ours = RedisChannelLayer(**config)
    theirs = channels_redis_core.RedisChannelLayer(**config)
    try:
        await theirs.send("worker.jobs", {"type": "job", "from": "theirs"})
        assert (await within(ours.receive("worker.jobs")))["from"] == "theirs"
        await ours.send("worker.jobs", {"type": "job", "from": "ours"})
        assert (await within(theirs.receive("worker.jobs")))["from"] == "ours"
        # channels_redis's group memberships written by achannels, and back.
        await ours.group_add("mixed", "worker.jobs")
        await theirs.group_send("mixed", {"type": "job", "from": "group"})
        assert (await within(ours.receive("worker.jobs")))["from"] == "group"
    finally:
        await theirs.flush()
        await ours.flush()
        await ours.close()


async def test_message_left_inflight_by_dead_channels_redis_receiver_is_delivered() -> (
    None
):
    config: dict[str, Any] = {"hosts": [require_redis()], "prefix": unique_prefix()}
    theirs = channels_redis_core.RedisChannelLayer(**config)
    ours = RedisChannelLayer(**config)
    try:
        # What a channels_redis receiver holds between BZPOPMIN and its cleanup.
        backup = f"{config['prefix']}worker.jobs$inflight"
        data = theirs.serialize({"type": "job", "n": 7})
        state = ours._states.get()
        await state.lanes[0].execute("ZADD", backup, 1.0, data)
        assert (await within(ours.receive("worker.jobs"))) == {"type": "job", "n": 7}
        assert await state.lanes[0].execute("EXISTS", backup) == 0
    finally:
        await theirs.flush()
        await ours.flush()
        await ours.close()
