"""RedisPubSubChannelLayer against a real Redis: channels, groups, options,
encryption and message checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from achannels.exceptions import MessageTooLarge
from achannels.layers.redis import RedisPubSubChannelLayer
from tests.support.redis import unique_prefix
from tests.support.redis_cluster import RedisDeployment

pytestmark = pytest.mark.redis


LayerFactory = Callable[..., RedisPubSubChannelLayer]


@pytest.fixture
def make_layer(deployment: RedisDeployment) -> LayerFactory:
    """Make layers on this test's deployment (single Redis or cluster)."""

    def make(**config: Any) -> RedisPubSubChannelLayer:
        config.setdefault("hosts", deployment.hosts)
        config.setdefault("prefix", unique_prefix())
        return RedisPubSubChannelLayer(**config)

    return make


@pytest.fixture
async def layer(make_layer: LayerFactory) -> AsyncIterator[RedisPubSubChannelLayer]:
    channel_layer = make_layer()
    yield channel_layer
    await channel_layer.close()


async def receive(layer: RedisPubSubChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), 5)


async def same_connection_channel(
    layer: RedisPubSubChannelLayer, deployment: RedisDeployment, channel: str
) -> str:
    """A new channel of ``layer`` whose messages come in on the same
    subscription connection as ``channel``'s (on a cluster: the same node)."""
    cluster = deployment.cluster
    if cluster is None:
        return await layer.new_channel()  # one subscription carries them all
    node = await asyncio.to_thread(cluster.master_of, channel)
    while True:
        other = await layer.new_channel()
        if await asyncio.to_thread(cluster.master_of, other) is node:
            return other


async def test_new_channel_uses_prefix_and_receives_messages(
    layer: RedisPubSubChannelLayer,
) -> None:
    channel = await layer.new_channel()
    assert channel.startswith(f"{layer.prefix}specific.")
    await layer.send(channel, {"type": "hello", "data": b"\x00bytes"})
    assert await receive(layer, channel) == {"type": "hello", "data": b"\x00bytes"}


async def test_group_send_reaches_members_in_every_process(
    layer: RedisPubSubChannelLayer,
    make_layer: LayerFactory,
) -> None:
    other_process = make_layer(prefix=layer.prefix)
    try:
        mine = [await layer.new_channel() for _ in range(3)]
        theirs = await other_process.new_channel()
        for channel in mine:
            await layer.group_add("room", channel)
        await other_process.group_add("room", theirs)
        await layer.group_send("room", {"type": "chat", "items": [1]})
        first = await receive(layer, mine[0])
        first["items"].append("mutated")
        for channel in mine[1:]:
            assert await receive(layer, channel) == {"type": "chat", "items": [1]}
        assert await receive(other_process, theirs) == {
            "type": "chat",
            "items": [1],
        }
    finally:
        await other_process.close()


async def test_group_discard_stops_delivery(layer: RedisPubSubChannelLayer) -> None:
    stay, leave = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", stay)
    await layer.group_add("room", leave)
    await layer.group_discard("room", leave)
    await layer.group_discard("room", "never.joined")
    await layer.group_send("room", {"type": "first"})
    await layer.send(leave, {"type": "direct"})
    assert (await receive(layer, stay))["type"] == "first"
    assert (await receive(layer, leave))["type"] == "direct"


async def test_group_add_needs_a_channel_of_this_process(
    layer: RedisPubSubChannelLayer,
) -> None:
    with pytest.raises(RuntimeError, match="in-process"):
        await layer.group_add("room", "somewhere.else")


async def test_cancelled_receive_unsubscribes_the_channel(
    layer: RedisPubSubChannelLayer,
    make_layer: LayerFactory,
    deployment: RedisDeployment,
) -> None:
    channel = await layer.new_channel()
    waiter = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    # Redis reports who listens: nobody, once the UNSUBSCRIBE went out.
    for _ in range(100):
        if await asyncio.to_thread(deployment.subscribers, channel) == 0:
            break
        await asyncio.sleep(0.01)
    assert deployment.subscribers(channel) == 0


async def test_messages_and_groups_are_checked_on_send(
    layer: RedisPubSubChannelLayer,
    make_layer: LayerFactory,
) -> None:
    with pytest.raises(TypeError, match=r"message\['when'\].*set"):
        await layer.send("some.channel", {"type": "x", "when": {1}})
    with pytest.raises(TypeError, match="group name"):
        await layer.group_send("bad group", {"type": "x"})
    small = make_layer(max_message_size=100)
    try:
        with pytest.raises(MessageTooLarge):
            await small.group_send("room", {"type": "x", "blob": "y" * 500})
    finally:
        await small.close()


async def test_encrypted_pubsub_messages_need_the_key(
    caplog: pytest.LogCaptureFixture,
    make_layer: LayerFactory,
) -> None:
    prefix = unique_prefix()
    layer = make_layer(prefix=prefix, symmetric_encryption_keys=["key-one"])
    intruder = make_layer(prefix=prefix)
    try:
        channel = await layer.new_channel()
        with caplog.at_level(logging.WARNING, "achannels.layers.redis"):
            await intruder.send(channel, {"type": "forged"})
            await layer.send(channel, {"type": "genuine"})
            assert (await receive(layer, channel))["type"] == "genuine"
        assert "could not be read" in caplog.text
    finally:
        await layer.close()
        await intruder.close()


async def test_flush_forgets_channels_and_fails_waiting_receivers(
    layer: RedisPubSubChannelLayer,
) -> None:
    channel = await layer.new_channel()
    waiter = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.01)
    await layer.flush()
    with pytest.raises(RuntimeError, match="flushed or closed"):
        await asyncio.wait_for(waiter, 5)
    fresh = await layer.new_channel()
    await layer.send(fresh, {"type": "after.flush"})
    assert (await receive(layer, fresh))["type"] == "after.flush"


async def test_channels_redis_only_options_are_accepted(
    caplog: pytest.LogCaptureFixture,
    make_layer: LayerFactory,
) -> None:
    with caplog.at_level(logging.WARNING, "achannels.layers.redis"):
        layer = make_layer(group_expiry=10, channel_capacity={"x": 1}, typo=1)
    assert "typo" in caplog.text
    assert "group_expiry" not in caplog.text
    await layer.close()


async def test_capacity_bounds_messages_waiting_in_process(
    make_layer: LayerFactory, deployment: RedisDeployment
) -> None:
    layer = make_layer(capacity=2)
    try:
        channel = await layer.new_channel()
        marker = await same_connection_channel(layer, deployment, channel)
        for index in range(5):
            await layer.send(channel, {"type": "m", "i": index})
        await layer.send(channel, {"type": "last"})
        # Published after them on the subscription that carries them: once
        # the marker is here, so is everything sent to ``channel``.
        await layer.send(marker, {"type": "marker"})
        assert (await receive(layer, marker))["type"] == "marker"
        # The oldest were dropped to stay within capacity.
        got = [await receive(layer, channel), await receive(layer, channel)]
        assert got[-1]["type"] == "last"
        assert len({message.get("i") for message in got}) == 2
    finally:
        await layer.close()
