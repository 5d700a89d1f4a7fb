"""RedisChannelLayer against a real Redis: channels, groups, capacity, expiry,
message checks, encryption and flushing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from achannels.exceptions import ChannelFull, MessageTooLarge
from achannels.layers.redis import RedisChannelLayer
from tests.support.redis import unique_prefix
from tests.support.redis_cluster import RedisDeployment

pytestmark = pytest.mark.redis


LayerFactory = Callable[..., RedisChannelLayer]


@pytest.fixture
def make_layer(deployment: RedisDeployment) -> LayerFactory:
    """Make layers on this test's deployment (single Redis or cluster)."""

    def make(**config: Any) -> RedisChannelLayer:
        config.setdefault("hosts", deployment.hosts)
        config.setdefault("prefix", unique_prefix())
        return RedisChannelLayer(**config)

    return make


@pytest.fixture
async def layer(make_layer: LayerFactory) -> AsyncIterator[RedisChannelLayer]:
    channel_layer = make_layer()
    yield channel_layer
    await channel_layer.flush()
    await channel_layer.close()


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), 5)


async def test_message_sent_to_specific_channel_is_received(
    layer: RedisChannelLayer,
) -> None:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "text": "hi", "n": [1, 2]})
    assert await receive(layer, channel) == {
        "type": "test.message",
        "text": "hi",
        "n": [1, 2],
    }


async def test_messages_from_one_sender_arrive_in_order(
    layer: RedisChannelLayer,
) -> None:
    channel = await layer.new_channel()
    for index in range(50):
        await layer.send(channel, {"type": "m", "i": index})
    assert [(await receive(layer, channel))["i"] for _ in range(50)] == list(range(50))


async def test_plain_channel_shared_by_receivers_delivers_each_message_once(
    layer: RedisChannelLayer,
) -> None:
    receivers = [asyncio.create_task(receive(layer, "jobs")) for _ in range(3)]
    for index in range(3):
        await layer.send("jobs", {"type": "job", "i": index})
    results = await asyncio.gather(*receivers)
    assert sorted(message["i"] for message in results) == [0, 1, 2]


async def test_cancelled_receive_loses_no_message(layer: RedisChannelLayer) -> None:
    channel = await layer.new_channel()
    for _ in range(20):
        waiter = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    await layer.send(channel, {"type": "kept"})
    plain = asyncio.create_task(layer.receive("work"))
    await asyncio.sleep(0.05)
    plain.cancel()
    await asyncio.gather(plain, return_exceptions=True)
    await layer.send("work", {"type": "kept.too"})
    assert (await receive(layer, channel))["type"] == "kept"
    assert (await receive(layer, "work"))["type"] == "kept.too"


async def test_group_send_reaches_every_member_once(layer: RedisChannelLayer) -> None:
    members = [await layer.new_channel() for _ in range(5)]
    for channel in members:
        await layer.group_add("room", channel)
    await layer.group_add("room", members[0])  # adding twice is one membership
    await layer.group_send("room", {"type": "chat", "text": "hello"})
    for channel in members:
        assert await receive(layer, channel) == {"type": "chat", "text": "hello"}
    await layer.send(members[0], {"type": "after"})
    assert (await receive(layer, members[0]))["type"] == "after"


async def test_group_discard_stops_delivery(layer: RedisChannelLayer) -> None:
    stay, leave = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", stay)
    await layer.group_add("room", leave)
    await layer.group_discard("room", leave)
    await layer.group_discard("room", "never.joined")
    await layer.group_send("room", {"type": "chat"})
    assert await receive(layer, stay) == {"type": "chat"}
    await layer.send(leave, {"type": "direct"})
    assert (await receive(layer, leave))["type"] == "direct"


async def test_group_members_get_independent_copies(layer: RedisChannelLayer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", first)
    await layer.group_add("room", second)
    await layer.group_send("room", {"type": "chat", "items": [1]})
    mine = await receive(layer, first)
    mine["items"].append(2)
    assert (await receive(layer, second))["items"] == [1]


async def test_send_to_full_channel_raises_channel_full(
    make_layer: LayerFactory,
) -> None:
    layer = make_layer(capacity=3, channel_capacity={"small*": 1})
    try:
        for _ in range(3):
            await layer.send("queue", {"type": "m"})
        with pytest.raises(ChannelFull, match=r"holds 3 messages"):
            await layer.send("queue", {"type": "m"})
        await layer.send("small.one", {"type": "m"})
        with pytest.raises(ChannelFull):
            await layer.send("small.one", {"type": "m"})
        # A specific channel of a process that is not receiving fills up too.
        other = make_layer(prefix=layer.prefix)
        channel = await other.new_channel()
        for _ in range(3):
            await layer.send(channel, {"type": "m"})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "m"})
        await other.close()
    finally:
        await layer.flush()
        await layer.close()


async def test_group_send_skips_full_member_reaches_rest(
    caplog: pytest.LogCaptureFixture,
    make_layer: LayerFactory,
) -> None:
    layer = make_layer(capacity=1)
    try:
        live = await layer.new_channel()
        await layer.group_add("room", live)
        await layer.group_add("room", "stuck")
        await layer.send("stuck", {"type": "old"})
        with caplog.at_level(logging.INFO, "achannels.layers.redis"):
            await layer.group_send("room", {"type": "news"})
        assert await receive(layer, live) == {"type": "news"}
        assert "1 of 2 channels over capacity in group room" in caplog.text
        assert (await receive(layer, "stuck"))["type"] == "old"
    finally:
        await layer.flush()
        await layer.close()


async def test_messages_and_memberships_expire(
    make_layer: LayerFactory,
    deployment: RedisDeployment,
) -> None:
    layer = make_layer(expiry=1, group_expiry=1)
    try:
        member = await layer.new_channel()
        await layer.group_add("room", member)
        await layer.send("queue", {"type": "stale"})
        await asyncio.sleep(2.1)
        await layer.send("queue", {"type": "fresh"})
        await layer.group_send("room", {"type": "to.nobody"})
        assert (await receive(layer, "queue"))["type"] == "fresh"
        await layer.send(member, {"type": "direct"})
        assert (await receive(layer, member))["type"] == "direct"
        assert not deployment.client().exists(layer._group_key("room"))
    finally:
        await layer.flush()
        await layer.close()


async def test_unserializable_value_is_refused_on_send_naming_the_key(
    layer: RedisChannelLayer,
) -> None:
    channel = await layer.new_channel()
    with pytest.raises(TypeError, match=r"message\['data'\]\['when'\].*set"):
        await layer.send(channel, {"type": "x", "data": {"when": {1, 2}}})
    with pytest.raises(TypeError, match=r"message\['items'\]\[1\].*object"):
        await layer.group_send("room", {"type": "x", "items": [1, object()]})
    with pytest.raises(TypeError, match="must be dicts"):
        await layer.send(channel, ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="__asgi_channel__") as raised:
        await layer.send(channel, {"type": "x", "__asgi_channel__": "y"})
    assert isinstance(raised.value, AssertionError)  # channels_redis asserts
    await layer.send(channel, {"type": "ok"})
    assert (await receive(layer, channel))["type"] == "ok"


async def test_too_large_message_raises_message_too_large(
    make_layer: LayerFactory,
) -> None:
    layer = make_layer(max_message_size=1000)
    try:
        with pytest.raises(MessageTooLarge, match=r"\d+ bytes.*1000"):
            await layer.send("queue", {"type": "x", "blob": b"x" * 2000})
        with pytest.raises(MessageTooLarge):
            await layer.group_send("room", {"type": "x", "blob": b"x" * 2000})
    finally:
        await layer.close()


async def test_invalid_names_raise_type_error(layer: RedisChannelLayer) -> None:
    with pytest.raises(TypeError, match="channel name"):
        await layer.send("bad name", {"type": "x"})
    with pytest.raises(TypeError, match="group name"):
        await layer.group_add("bad group!", "channel")
    with pytest.raises(TypeError):
        await layer.receive("a" * 200)


async def test_json_serializer_round_trips(
    layer: RedisChannelLayer,
    make_layer: LayerFactory,
) -> None:
    json_layer = make_layer(serializer_format="json", prefix=layer.prefix)
    try:
        channel = await json_layer.new_channel()
        await json_layer.send(channel, {"type": "x", "values": [1, "two", None]})
        assert (await receive(json_layer, channel))["values"] == [1, "two", None]
        with pytest.raises(TypeError, match=r"message\['blob'\].*json"):
            await json_layer.send(channel, {"type": "x", "blob": b"raw"})
    finally:
        await json_layer.close()
    with pytest.raises(ValueError, match="serializer_format"):
        make_layer(serializer_format="pickle")


async def test_encrypted_messages_cannot_be_read_or_forged_without_the_key(
    caplog: pytest.LogCaptureFixture,
    make_layer: LayerFactory,
    deployment: RedisDeployment,
) -> None:
    prefix = unique_prefix()
    layer = make_layer(prefix=prefix, symmetric_encryption_keys=["secret-key"])
    intruder = make_layer(prefix=prefix, symmetric_encryption_keys=["wrong-key"])
    plain = make_layer(prefix=prefix)
    try:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "x", "text": "top secret words"})
        stored = deployment.client().zrange(
            layer._key(layer.non_local_name(channel)), 0, -1
        )
        assert stored and all(b"top secret" not in data for data in stored)
        assert (await receive(layer, channel))["text"] == "top secret words"
        # Messages forged without the key, or with another key, are dropped.
        with caplog.at_level(logging.WARNING, "achannels.layers.redis"):
            await intruder.send(channel, {"type": "forged", "by": "wrong key"})
            await plain.send(channel, {"type": "forged", "by": "no key"})
            await layer.send(channel, {"type": "genuine"})
            assert (await receive(layer, channel))["type"] == "genuine"
        assert "could not be read" in caplog.text
        # A process with rotated keys (new first, old after) still reads
        # messages from processes that only have the old key.
        rotated = make_layer(
            prefix=prefix, symmetric_encryption_keys=["new-key", "secret-key"]
        )
        rotated_channel = await rotated.new_channel()
        await layer.send(rotated_channel, {"type": "old.key"})
        assert (await receive(rotated, rotated_channel))["type"] == "old.key"
        await rotated.close()
    finally:
        await layer.flush()
        for each in (layer, intruder, plain):
            await each.close()
    with pytest.raises(ValueError, match="list"):
        make_layer(symmetric_encryption_keys="just-a-string")


async def test_flush_deletes_messages_and_groups(
    layer: RedisChannelLayer,
    deployment: RedisDeployment,
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.send("queue", {"type": "x"})
    await layer.flush()
    assert deployment.client().keys(layer.prefix + "*") == []
    await layer.group_send("room", {"type": "to.nobody"})
    await layer.send(channel, {"type": "after.flush"})
    assert (await receive(layer, channel))["type"] == "after.flush"


async def test_receive_on_foreign_specific_channel_is_refused(
    layer: RedisChannelLayer,
    make_layer: LayerFactory,
) -> None:
    other = make_layer(prefix=layer.prefix)
    channel = await other.new_channel()
    with pytest.raises(ValueError, match="new_channel"):
        await layer.receive(channel)
    # channels_redis asserts "Wrong client prefix": its users catch this.
    with pytest.raises(AssertionError):
        await layer.receive("not-client-prefix!local_part")


def test_hosts_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="list"):
        RedisChannelLayer(hosts="redis://localhost:6379")


async def test_close_ends_waiting_receivers_with_a_clear_error(
    make_layer: LayerFactory,
) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    waiter = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.05)
    await layer.close()
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(waiter, 5)
    # The layer reconnects on next use.
    await layer.send(channel, {"type": "after.close"})
    assert (await receive(layer, channel))["type"] == "after.close"
    await layer.flush()
    await layer.close()


async def test_receiving_from_two_event_loops_at_once_is_refused(
    layer: RedisChannelLayer,
) -> None:
    first = await layer.new_channel()
    waiter = asyncio.create_task(layer.receive(first))
    await asyncio.sleep(0.05)

    async def elsewhere() -> None:
        await layer.receive(await layer.new_channel())

    with pytest.raises(RuntimeError, match="Two event loops"):
        await asyncio.to_thread(asyncio.run, elsewhere())
    await layer.send(first, {"type": "still.fine"})
    assert (await asyncio.wait_for(waiter, 5))["type"] == "still.fine"


async def test_plain_channel_message_goes_to_a_process_that_still_waits(
    layer: RedisChannelLayer,
    make_layer: LayerFactory,
) -> None:
    other_process = make_layer(prefix=layer.prefix)
    try:
        leaving = asyncio.create_task(layer.receive("jobs"))
        await asyncio.sleep(0.05)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        staying = asyncio.create_task(other_process.receive("jobs"))
        for index in range(3):
            await layer.send("jobs", {"type": "job", "i": index})
        got = [await asyncio.wait_for(staying, 5)]
        got += [await receive(other_process, "jobs") for _ in range(2)]
        # What the first process popped after its receiver left went back.
        assert sorted(message["i"] for message in got) == [0, 1, 2]
    finally:
        await other_process.close()


def test_group_key_is_channels_redis_bytes() -> None:
    # channels_redis returns bytes here; code written for it compares them.
    # (The key on the wire is unchanged: tests/redis/test_interop.py.)
    assert RedisChannelLayer(prefix="p")._group_key("room") == b"p:group:room"
    assert RedisChannelLayer()._group_key("room") == b"asgi:group:room"


def test_non_str_prefix_is_a_type_error_and_an_assertion_error() -> None:
    with pytest.raises(TypeError, match="prefix must be a str") as raised:
        RedisChannelLayer(prefix=b"asgi")  # type: ignore[arg-type]
    assert isinstance(raised.value, AssertionError)  # channels_redis asserts
