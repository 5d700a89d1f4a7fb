"""Serializers as channels_redis users configure them: the registry, custom
formats on both Redis layers, and what a layer does with what they decode."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from achannels.layers.redis.serializers import (
    BaseMessageSerializer,
    JSONSerializer,
    MsgPackSerializer,
    SerializerDoesNotExist,
    registry,
)
from tests.support.redis import require_redis, unique_prefix
from tests.support.redis_cluster import RedisDeployment

pytestmark = pytest.mark.redis

TIMEOUT = 5


class TaggedJSON(BaseMessageSerializer):
    """JSON behind a visible tag, so a test can see it was used on the wire."""

    format = "tagged"

    def as_bytes(self, message: Any, *args: Any, **kwargs: Any) -> bytes:
        return b"TAG:" + json.dumps(message).encode()

    def from_bytes(self, message: bytes, *args: Any, **kwargs: Any) -> Any:
        assert message.startswith(b"TAG:"), message
        return json.loads(message[4:])


class Duck:
    """Not a BaseMessageSerializer: serialize/deserialize only, as
    channels_redis also accepts."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def serialize(self, message: Any) -> bytes:
        return json.dumps(message).encode()

    def deserialize(self, message: bytes) -> Any:
        return json.loads(message)


class Scalars(Duck):
    """Decodes every message as a bare string: never a message dict."""

    def deserialize(self, message: bytes) -> Any:
        return "not a dict"


@pytest.fixture
def formats() -> Iterator[None]:
    for name, serializer_class in (
        ("tagged", TaggedJSON),
        ("duck", Duck),
        ("scalars", Scalars),
    ):
        registry.register_serializer(name, serializer_class)
    yield
    for name in ("tagged", "duck", "scalars"):
        registry._registry.pop(name)


def core(deployment: RedisDeployment, **config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=deployment.hosts, prefix=unique_prefix(), **config)


def pubsub(deployment: RedisDeployment, **config: Any) -> RedisPubSubChannelLayer:
    return RedisPubSubChannelLayer(
        hosts=deployment.hosts, prefix=unique_prefix(), **config
    )


async def test_a_registered_format_carries_messages_on_the_core_layer(
    formats: None, deployment: RedisDeployment
) -> None:
    layer = core(deployment, serializer_format="tagged")
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.send(channel, {"type": "direct", "n": 1})
        stored = deployment.client().zrange(
            layer._key(layer.non_local_name(channel)), 0, -1
        )
        # The random prefix (12 bytes by default) precedes the tag.
        assert [data[12:16] for data in stored] == [b"TAG:"]
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {
            "type": "direct",
            "n": 1,
        }
        await layer.group_send("room", {"type": "group", "n": 2})
        assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["n"] == 2
    finally:
        await layer.flush()
        await layer.close()


async def test_a_duck_typed_serializer_gets_the_layer_options(
    formats: None, deployment: RedisDeployment
) -> None:
    layer = core(deployment, serializer_format="duck", random_prefix_length=0)
    try:
        assert isinstance(layer._serializer, Duck)
        assert layer._serializer.options == {
            "random_prefix_length": 0,
            "expiry": 60,
            "symmetric_encryption_keys": None,
        }
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "duck"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {
            "type": "duck"
        }
    finally:
        await layer.flush()
        await layer.close()


async def test_a_registered_format_carries_messages_on_the_pubsub_layer(
    formats: None, deployment: RedisDeployment
) -> None:
    layer = pubsub(deployment, serializer_format="tagged")
    try:
        assert isinstance(layer._serializer, TaggedJSON)
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "group", "text": "hi"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {
            "type": "group",
            "text": "hi",
        }
    finally:
        await layer.close()


async def test_pubsub_carries_values_that_are_not_dicts_as_channels_redis(
    deployment: RedisDeployment,
) -> None:
    layer = pubsub(deployment)
    try:
        channel = await layer.new_channel()
        await layer.send(channel, "message.1")  # type: ignore[arg-type]
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == "message.1"
    finally:
        await layer.close()


async def test_core_layer_drops_what_decodes_to_no_message_and_goes_on(
    formats: None, deployment: RedisDeployment, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=deployment.hosts, prefix=prefix)
    odd = RedisChannelLayer(
        hosts=deployment.hosts, prefix=prefix, serializer_format="scalars"
    )
    try:
        channel = await odd.new_channel()
        # A sender in the normal format: the odd receiver decodes a str.
        await layer.send(channel, {"type": "lost"})
        receiving = asyncio.ensure_future(odd.receive(channel))
        with caplog.at_level(logging.WARNING, "achannels.layers.redis"):
            for _ in range(int(TIMEOUT / 0.05)):
                if "not a message dict" in caplog.text:
                    break
                await asyncio.sleep(0.05)
        assert "decoded a str, not a message dict" in caplog.text
        assert not receiving.done()  # still receiving, nothing crashed
        receiving.cancel()
    finally:
        await layer.flush()
        await layer.close()
        await odd.close()


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(SerializerDoesNotExist) as raised:
        registry.get_serializer("pickle")
    # channels_redis raises a KeyError; a bad option is also a ValueError.
    assert isinstance(raised.value, KeyError)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(
        "Unknown serializer_format 'pickle': use one of 'json', 'msgpack'"
    )
    with pytest.raises(SerializerDoesNotExist):
        RedisPubSubChannelLayer(serializer_format="pickle")


@pytest.mark.parametrize("serializer_class", [MsgPackSerializer, JSONSerializer])
def test_prefix_and_encryption_wrap_the_format(
    serializer_class: type[BaseMessageSerializer],
) -> None:
    message = {"type": "x", "nested": {"list": [1, "two"]}}
    for length in (0, -1):
        plain = serializer_class(random_prefix_length=length)
        assert plain.serialize(message) == plain.as_bytes(message)
    sealed = serializer_class(
        symmetric_encryption_keys=["key"], random_prefix_length=4, expiry=60
    )
    data = sealed.serialize(message)
    assert plain.as_bytes(message) not in data
    assert sealed.deserialize(data) == message
    assert (
        serializer_class(symmetric_encryption_keys=["other", "key"]).deserialize(
            data[4:]
        )
        == message
    )


async def test_channels_redis_utils_close_a_client_and_its_pool() -> None:
    from redis.asyncio import Redis

    from achannels.layers.redis.utils import _close_redis, create_pool, decode_hosts

    client = Redis(connection_pool=create_pool(decode_hosts([require_redis()])[0]))
    assert await client.ping()
    pool = client.connection_pool
    assert pool._available_connections or pool._in_use_connections
    await _close_redis(client)
    assert not any(c.is_connected for c in pool._available_connections)
