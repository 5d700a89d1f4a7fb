"""Redis: names from user input stay inside their layer's prefix, and
encrypted messages cannot be read or forged without the key.

The key tests run a private ``redis-server`` so that every key in it is
accounted for. The keys a layer writes are ``prefix + channel`` and
``prefix + ":group:" + group`` (channels_redis's layout); channel and group
names cannot contain ``:``, ``*``, ``?``, ``[``, whitespace or anything else
outside ``[a-zA-Z0-9-_.]`` (plus one ``!`` in channel names), so they can
neither reach the group namespace nor climb out of the prefix.

Choose prefixes that no other tenant's prefix extends with name characters:
with ``"chat"`` and ``"chat2"``, channel ``"2room"`` of the first is
channel ``"room"`` of the second (as in channels_redis). Ending every
prefix with ``:`` rules that out.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from functools import partial
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

import redis
from achannels.layers.redis import RedisChannelLayer
from tests.support.redis import PrivateRedis, private_redis, unique_prefix
from tests.support.reliability import APP, TIMEOUT, fetch_json
from tests.support.servers import serve

CHANNEL = re.compile(r"[a-zA-Z\d\-_.]+(![\w\-.]*)?", re.ASCII)
GROUP = re.compile(r"[a-zA-Z\d\-_.]+", re.ASCII)
OURS, THEIRS, GLOBBY = "tenant-a:", "tenant-b:", "tenant*:"

ATTACKS = [
    "room",
    "*",
    "tenant-b:room",
    ":group:room",
    "group:room",
    "../tenant-b",
    "room\r\nFLUSHALL",
    "room FLUSHALL",
    "a!b!c",
    "\x00",
    "room?",
    "[tenant-b]*",
    "${prefix}",
    "%s",
    "{tenant-b}",
    "x" * 99,
    "x" * 100,
]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def raw(redis_server: PrivateRedis) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def snapshot(raw: Any, prefix: str) -> dict[bytes, list[bytes]]:
    """Every key under ``prefix`` (taken literally) with its members."""
    return {
        key: sorted(raw.zrange(key, 0, -1))
        for key in raw.keys()
        if key.startswith(prefix.encode())
    }


async def use_names(layer: RedisChannelLayer, names: list[str]) -> None:
    """Do with ``names`` what an app does with user input; invalid names
    must be refused before anything reaches Redis."""
    for name in names:
        calls: list[Callable[[], Awaitable[None]]] = [
            partial(layer.send, name, {"type": "x", "text": name}),
            partial(layer.group_add, name, "ours.member"),
            partial(layer.group_add, "ours", name),
            partial(layer.group_send, name, {"type": "x"}),
            partial(layer.group_discard, name, "ours.member"),
        ]
        for call in calls:
            try:
                await asyncio.wait_for(call(), TIMEOUT)
            except TypeError:
                pass


def assert_keys_are_ours(raw: Any, prefix: str) -> None:
    for key in (k.decode() for k in raw.keys()):
        if key.startswith((THEIRS, GLOBBY)):
            continue
        assert key.startswith(prefix), key
        rest = key[len(prefix) :]
        if rest.startswith(":group:"):
            assert GROUP.fullmatch(rest[len(":group:") :]), key
        else:
            assert CHANNEL.fullmatch(rest) and ":" not in rest, key


@pytest.fixture
async def tenants(
    redis_server: PrivateRedis, raw: redis.Redis
) -> AsyncIterator[tuple[RedisChannelLayer, RedisChannelLayer]]:
    raw.flushall()
    ours = RedisChannelLayer(hosts=[redis_server.url], prefix=OURS)
    theirs = RedisChannelLayer(hosts=[redis_server.url], prefix=THEIRS)
    await theirs.send("room", {"type": "theirs", "secret": "for tenant b"})
    await theirs.group_add("room", "theirs.member")
    try:
        yield ours, theirs
    finally:
        await ours.close()
        await theirs.close()


async def test_attack_names_stay_in_their_prefix(
    tenants: tuple[RedisChannelLayer, RedisChannelLayer], raw: redis.Redis
) -> None:
    ours, theirs = tenants
    before = snapshot(raw, THEIRS)
    await use_names(ours, ATTACKS)
    assert_keys_are_ours(raw, OURS)
    assert snapshot(raw, THEIRS) == before
    # Tenant b sees exactly what it had.
    message = await asyncio.wait_for(theirs.receive("room"), TIMEOUT)
    assert message == {"type": "theirs", "secret": "for tenant b"}
    members = raw.zrange(f"{THEIRS}:group:room", 0, -1)
    assert members == [b"theirs.member"]


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    names=st.lists(
        st.text(
            st.sampled_from(list("abAB09-_.!:*?[]{}/\\ \n\r\t\x00é$%@#,;'\"")),
            max_size=30,
        ),
        max_size=5,
    )
)
async def test_generated_names_stay_in_their_prefix(
    tenants: tuple[RedisChannelLayer, RedisChannelLayer],
    raw: redis.Redis,
    names: list[str],
) -> None:
    before = snapshot(raw, THEIRS)
    await use_names(tenants[0], names)
    assert_keys_are_ours(raw, OURS)
    assert snapshot(raw, THEIRS) == before


async def test_flush_of_a_prefix_with_glob_characters_spares_other_tenants(
    redis_server: PrivateRedis, raw: redis.Redis
) -> None:
    raw.flushall()
    globby = RedisChannelLayer(hosts=[redis_server.url], prefix=GLOBBY)
    neighbours = [
        RedisChannelLayer(hosts=[redis_server.url], prefix=prefix)
        for prefix in (OURS, THEIRS)
    ]
    try:
        for layer in (globby, *neighbours):
            await layer.send("room", {"type": "x"})
            await layer.group_add("room", "member")
        before = {p: snapshot(raw, p) for p in (OURS, THEIRS)}
        assert all(before.values())
        await globby.flush()
        assert snapshot(raw, GLOBBY) == {}
        assert {p: snapshot(raw, p) for p in (OURS, THEIRS)} == before
    finally:
        for layer in (globby, *neighbours):
            await layer.close()


# Encryption


KEY = "the-right-key-" + secrets.token_hex(8)


@pytest.fixture
async def sealed(redis_server: PrivateRedis) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(
        hosts=[redis_server.url],
        prefix=unique_prefix() + ":",
        symmetric_encryption_keys=[KEY],
    )
    try:
        yield layer
    finally:
        await layer.flush()
        await layer.close()


async def test_encrypted_group_messages_hide_content_and_member_names(
    sealed: RedisChannelLayer, raw: redis.Redis
) -> None:
    # Plain channels are read only while someone waits on them, so the
    # messages stay in Redis to be looked at.
    await sealed.group_add("room", "alice.inbox")
    await sealed.group_add("room", "bob.inbox")
    await sealed.group_send("room", {"type": "x", "text": "meet at noon"})
    stored = [
        data
        for key in raw.keys(f"{sealed.prefix}*inbox")
        for data in raw.zrange(key, 0, -1)
    ]
    assert len(stored) == 2
    for data in stored:
        assert b"noon" not in data
        assert b"meet" not in data
        assert b"alice" not in data and b"bob" not in data
    for inbox in ("alice.inbox", "bob.inbox"):
        message = await asyncio.wait_for(sealed.receive(inbox), TIMEOUT)
        assert message == {"type": "x", "text": "meet at noon"}


def forgeries(prefix: str, channel: str, body: Mapping[str, object]) -> list[bytes]:
    """Ways to write a message for ``channel`` without the key: plain msgpack,
    another key, and a genuine message with one byte changed."""
    target = {**body, "__asgi_channel__": channel}
    plain = b"\0" * 12 + msgpack.packb(target)
    other = RedisChannelLayer(
        hosts=["redis://unused:1/0"], prefix=prefix, symmetric_encryption_keys=["x"]
    ).serialize(target)
    genuine = RedisChannelLayer(
        hosts=["redis://unused:1/0"], prefix=prefix, symmetric_encryption_keys=[KEY]
    ).serialize(target)
    middle = 12 + (len(genuine) - 12) // 2
    flipped = genuine[:middle] + bytes([genuine[middle] ^ 1]) + genuine[middle + 1 :]
    return [plain, other, flipped]


async def test_forged_and_tampered_messages_are_dropped_receiving_goes_on(
    sealed: RedisChannelLayer, raw: redis.Redis
) -> None:
    channel = await sealed.new_channel()
    key = sealed.prefix + sealed.non_local_name(channel)
    for forged in forgeries(sealed.prefix, channel, {"type": "forged"}):
        raw.zadd(key, {forged: time.time()})
    await sealed.send(channel, {"type": "genuine"})
    assert await asyncio.wait_for(sealed.receive(channel), TIMEOUT) == {
        "type": "genuine"
    }
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sealed.receive(channel), 0.5)


async def test_forged_messages_never_reach_a_client_through_a_server(
    redis_server: PrivateRedis, raw: redis.Redis
) -> None:
    prefix = unique_prefix() + ":"
    env = {
        "RELIABILITY_LAYER": "redis",
        "RELIABILITY_REDIS_URL": redis_server.url,
        "RELIABILITY_REDIS_PREFIX": prefix,
        "RELIABILITY_REDIS_KEYS": KEY,
    }
    with serve(APP, "uvicorn-wsproto", env=env) as server:
        async with connect(f"{server.ws_url}/ws/announce/", open_timeout=TIMEOUT) as ws:
            channel = str(await asyncio.wait_for(ws.recv(), TIMEOUT))
            key = prefix + channel[: channel.index("!") + 1]
            body = {"type": "note.message", "text": "forged"}
            for forged in forgeries(prefix, channel, body):
                raw.zadd(key, {forged: time.time()})
            quoted = urllib.parse.quote(channel, safe="!")
            await fetch_json(f"{server.url}/send/{quoted}/?text=genuine")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "genuine"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)
        output = await asyncio.to_thread(server.stop)
    assert "could not be read" in output
    assert "Traceback" not in output, output
