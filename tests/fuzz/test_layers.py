"""Property tests of the channel layers: whatever names and messages come in,
the layers either carry them faithfully or raise a documented exception.

Documented: ``TypeError`` for an invalid name, a non-dict message or a value
the layer cannot carry; ``MessageTooLarge``; ``ChannelFull``; and for Redis
a message that is not the layer's own (``__asgi_channel__`` in it:
``ValueError``). What a receiver gets equals what was sent, up to the
msgpack round trip (tuples arrive as lists).

Bytes that reach Redis from elsewhere (another program, a bug, an intruder
without the encryption key) are dropped with a log line; they never stop the
process's receiving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redis
from achannels.exceptions import ChannelFull, MessageTooLarge
from achannels.layers import BaseChannelLayer, InMemoryChannelLayer
from achannels.layers.redis import RedisChannelLayer
from tests.support.redis import require_redis, unique_prefix

TIMEOUT = 10
CHANNEL = re.compile(r"[a-zA-Z\d\-_.]+(![\w\-.]*)?", re.ASCII)
GROUP = re.compile(r"[a-zA-Z\d\-_.]+", re.ASCII)
DOCUMENTED = (TypeError, ValueError, MessageTooLarge, ChannelFull)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Names: mostly near-valid, with the characters that break key schemes.
name_chars = st.sampled_from(
    list("abcXYZ019-_.") + list("!*?[]{}:/\\ \t\n\r\x00@#%$'\"é١ｆ")
)
names = st.one_of(
    st.text(name_chars, min_size=0, max_size=110),
    st.text(max_size=30),
    st.integers(),
    st.none(),
    st.binary(max_size=10),
)


class Uncopyable:
    """Neither msgpack nor a deep copy can carry it."""

    def __reduce__(self) -> Any:
        raise TypeError("Uncopyable values cannot be copied")


# Messages: msgpack-able values, and some that are not.
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
carried = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
odd = st.one_of(
    st.integers(min_value=2**64),
    st.sets(st.integers(), max_size=2),
    st.builds(lambda: Uncopyable()),
    st.complex_numbers(allow_nan=False),
    st.tuples(st.integers()),
)
messages = st.one_of(
    st.dictionaries(st.text(max_size=10), st.one_of(carried, odd), max_size=5).map(
        lambda body: {"type": "fuzz.message", **body}
    ),
    st.dictionaries(st.text(max_size=10), carried, max_size=3),
    carried,
)


def packb(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def normalised(value: Any) -> Any:
    """``value`` as it comes out of msgpack: tuples become lists."""
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalised(item) for item in value]
    return value


@pytest.fixture(params=["memory", "redis"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[BaseChannelLayer]:
    if request.param == "memory":
        yield InMemoryChannelLayer(capacity=1000)
        return
    redis_layer = RedisChannelLayer(
        hosts=[require_redis()], prefix=unique_prefix(), capacity=1000
    )
    try:
        yield redis_layer
    finally:
        await redis_layer.flush()
        await redis_layer.close()


@FUZZ
@given(name=names)
async def test_any_channel_name_is_carried_or_type_error(
    layer: BaseChannelLayer, name: Any
) -> None:
    valid = (
        isinstance(name, str)
        and len(name) < 100
        and CHANNEL.fullmatch(name) is not None
        and "!" not in name  # process-specific names come from new_channel()
    )
    try:
        await asyncio.wait_for(layer.send(name, {"type": "probe"}), TIMEOUT)
    except TypeError:
        assert not valid or "!" in str(name)
        return
    assert valid or (isinstance(name, str) and "!" in name), name
    if valid:
        received = await asyncio.wait_for(layer.receive(name), TIMEOUT)
        assert received == {"type": "probe"}


@FUZZ
@given(group=names, channel=names)
async def test_any_group_and_channel_name_is_accepted_or_type_error(
    layer: BaseChannelLayer, group: Any, channel: Any
) -> None:
    valid_group = (
        isinstance(group, str) and len(group) < 100 and bool(GROUP.fullmatch(group))
    )
    valid_channel = (
        isinstance(channel, str)
        and len(channel) < 100
        and bool(CHANNEL.fullmatch(channel))
    )
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: layer.group_add(group, channel),
        lambda: layer.group_send(group, {"type": "probe"}),
        lambda: layer.group_discard(group, channel),
    ]
    for call in calls:
        try:
            await asyncio.wait_for(call(), TIMEOUT)
        except TypeError as error:
            assert not (valid_group and valid_channel), error
            assert str(error)


@FUZZ
@given(message=messages)
async def test_any_message_round_trips_or_raises_documented_error(
    layer: BaseChannelLayer, message: Any
) -> None:
    try:
        await asyncio.wait_for(layer.send("fuzz.inbox", message), TIMEOUT)
    except DOCUMENTED as error:
        assert str(error)
        return
    received = await asyncio.wait_for(layer.receive("fuzz.inbox"), TIMEOUT)
    if isinstance(layer, RedisChannelLayer):
        assert received == normalised(message)
    else:
        assert received == message
        assert received is not message


@FUZZ
@given(message=messages)
async def test_any_group_message_reaches_members_or_raises_documented_error(
    layer: BaseChannelLayer, message: Any
) -> None:
    await layer.group_add("fuzzers", "fuzz.one")
    await layer.group_add("fuzzers", "fuzz.two")
    try:
        await asyncio.wait_for(layer.group_send("fuzzers", message), TIMEOUT)
    except DOCUMENTED as error:
        assert str(error)
        return
    one = await asyncio.wait_for(layer.receive("fuzz.one"), TIMEOUT)
    two = await asyncio.wait_for(layer.receive("fuzz.two"), TIMEOUT)
    expected = normalised(message) if isinstance(layer, RedisChannelLayer) else message
    assert one == two == expected


# Bytes in Redis that no layer wrote

foreign_values = st.one_of(
    carried,
    st.dictionaries(
        st.just("__asgi_channel__"),
        st.one_of(
            leaves,
            st.lists(st.one_of(leaves, st.lists(leaves, max_size=2)), max_size=3),
            st.dictionaries(st.text(max_size=3), leaves, max_size=2),
        ),
        min_size=1,
    ).map(lambda body: {"type": "fuzz.message", **body}),
)


@pytest.fixture
async def redis_layer() -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[require_redis()], prefix=unique_prefix())
    try:
        yield layer
    finally:
        await layer.flush()
        await layer.close()


async def test_message_with_bad_channel_field_is_dropped_and_receiving_goes_on(
    redis_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: an int here ended the pump, and with it every receive()
    # of the process on its specific channels, without a word.
    channel = await redis_layer.new_channel()
    key = redis_layer.prefix + redis_layer.non_local_name(channel)
    client = redis.Redis.from_url(require_redis())
    try:
        with caplog.at_level(logging.WARNING, logger="achannels"):
            for target in (5, None, {"a": 1}, [1, 2], [[channel]]):
                body = packb({"type": "x", "__asgi_channel__": target})
                client.zadd(key, {b"\0" * 12 + body: time.time()})
            await redis_layer.send(channel, {"type": "genuine"})
            received = await asyncio.wait_for(redis_layer.receive(channel), TIMEOUT)
        assert received == {"type": "genuine"}
        # Reported once (per layer and minute), naming the field.
        assert "__asgi_channel__ is 5" in caplog.text
    finally:
        client.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    junk=st.lists(
        st.one_of(
            st.binary(max_size=40),
            foreign_values.map(lambda value: b"\0" * 12 + packb(value)),
        ),
        min_size=1,
        max_size=4,
    )
)
async def test_foreign_bytes_in_redis_never_stop_receiving(
    redis_layer: RedisChannelLayer, junk: list[bytes]
) -> None:
    channel = await redis_layer.new_channel()
    key = redis_layer.prefix + redis_layer.non_local_name(channel)
    client = redis.Redis.from_url(require_redis())
    try:
        score = time.time()
        client.zadd(key, {data: score + n * 1e-6 for n, data in enumerate(junk)})
        await redis_layer.send(channel, {"type": "genuine"})
        # Foreign entries may decode into messages for this channel; the
        # genuine one must arrive after them, and receiving must go on.
        for _ in range(len(junk) + 1):
            received = await asyncio.wait_for(redis_layer.receive(channel), TIMEOUT)
            if received == {"type": "genuine"}:
                break
        else:
            pytest.fail("the genuine message never arrived")
    finally:
        client.close()
