"""Configuring the Redis layers as channels_redis 4.x is configured: host
forms (URL, dict, pair, Sentinel), defaults, capacities, prefixes, and the
layer manager's BACKEND mapping."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from achannels.layers import ChannelLayerManager
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.support.redis import (
    PrivateRedis,
    PrivateSentinel,
    host_of,
    require_redis,
    unique_prefix,
)

channels_redis_core = pytest.importorskip("channels_redis.core")

pytestmark = pytest.mark.redis


def test_defaults_are_channels_redis_defaults() -> None:
    ours, theirs = RedisChannelLayer(), channels_redis_core.RedisChannelLayer()
    for name in ("prefix", "expiry", "group_expiry", "capacity", "hosts"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert RedisPubSubChannelLayer().prefix == "asgi"
    assert ours.extensions == ["groups", "flush"]


async def round_trip(layer: Any) -> dict[str, Any]:
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "config.check"})
    message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 5)
    await layer.close()
    return message


@pytest.mark.parametrize("form", ["url", "address dict", "host dict", "pair"])
@pytest.mark.parametrize("kind", [RedisChannelLayer, RedisPubSubChannelLayer])
async def test_every_host_form_connects(form: str, kind: type[Any]) -> None:
    url = require_redis()
    host, port = host_of(url)
    db = int(url.rsplit("/", 1)[-1]) if re.search(r"/\d+$", url) else 0
    hosts: dict[str, Any] = {
        "url": url,
        "address dict": {"address": url, "client_name": "achannels-config-test"},
        "host dict": {"host": host, "port": port, "db": db},
        "pair": (host, port),
    }
    layer = kind(hosts=[hosts[form]], prefix=unique_prefix())
    assert await round_trip(layer) == {"type": "config.check"}


@pytest.mark.parametrize("kind", [RedisChannelLayer, RedisPubSubChannelLayer])
async def test_sentinel_host_finds_the_master(kind: type[Any]) -> None:
    master = PrivateRedis()
    master.start()
    sentinel = PrivateSentinel(master)
    try:
        sentinel.start()
        layer = kind(
            hosts=[
                {
                    "sentinels": [("127.0.0.1", sentinel.port)],
                    "master_name": "mymaster",
                    "sentinel_kwargs": {"socket_timeout": 2},
                }
            ],
            prefix=unique_prefix(),
        )
        assert await round_trip(layer) == {"type": "config.check"}
        client = master.client()
        assert client.info("stats")["total_commands_processed"] > 0
        client.close()
    finally:
        sentinel.stop()
        master.stop()


def test_bad_host_entries_are_explained() -> None:
    with pytest.raises(TypeError, match="Invalid Redis host 42"):
        RedisChannelLayer(hosts=[42])
    with pytest.raises(ValueError, match="sentinels"):
        RedisChannelLayer(hosts=[{"master_name": "mymaster"}])
    with pytest.raises(TypeError, match="prefix"):
        RedisChannelLayer(prefix=b"bytes")  # type: ignore[arg-type]


async def test_channel_capacity_patterns_apply_per_channel() -> None:
    layer = RedisChannelLayer(
        hosts=[require_redis()],
        prefix=unique_prefix(),
        capacity=5,
        channel_capacity={"http.*": 1, re.compile(r"^big"): 10},
    )
    try:
        assert layer.get_capacity("http.request") == 1
        assert layer.get_capacity("bigqueue") == 10
        assert layer.get_capacity("other") == 5
        await layer.send("http.request", {"type": "m"})
        with pytest.raises(Exception, match="holds 1"):
            await layer.send("http.request", {"type": "m"})
    finally:
        await layer.flush()
        await layer.close()


async def test_prefixes_keep_layers_apart() -> None:
    url = require_redis()
    first = RedisChannelLayer(hosts=[url], prefix=unique_prefix())
    second = RedisChannelLayer(hosts=[url], prefix=unique_prefix())
    try:
        await first.send("shared.name", {"type": "first"})
        await second.send("shared.name", {"type": "second"})
        assert (await asyncio.wait_for(first.receive("shared.name"), 5))["type"] == (
            "first"
        )
        assert (await asyncio.wait_for(second.receive("shared.name"), 5))[
            "type"
        ] == "second"
    finally:
        for layer in (first, second):
            await layer.flush()
            await layer.close()


@pytest.mark.parametrize(
    ("backend", "kind"),
    [
        ("achannels.layers.redis.RedisChannelLayer", RedisChannelLayer),
        ("channels_redis.core.RedisChannelLayer", RedisChannelLayer),
        ("channels_redis.pubsub.RedisPubSubChannelLayer", RedisPubSubChannelLayer),
    ],
)
def test_channel_layers_setting_builds_the_redis_layers(
    backend: str, kind: type[Any]
) -> None:
    manager = ChannelLayerManager()
    manager.configure(
        {
            "default": {
                "BACKEND": backend,
                "CONFIG": {"hosts": ["redis://127.0.0.1:6379/1"], "prefix": "x"},
            }
        }
    )
    layer = manager["default"]
    assert type(layer) is kind
    assert layer.prefix == "x"
