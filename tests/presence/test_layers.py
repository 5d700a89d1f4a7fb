"""The presence API of every layer: track, update, untrack, list, diffs,
group_size; and a dead node's entries reaped on Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from achannels.layers import InMemoryChannelLayer
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.presence import deadline
from tests.support.redis import require_redis, unique_prefix

REF = "presence_ref"


@pytest.fixture(params=["memory", "core", "pubsub", "core-cluster", "pubsub-cluster"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    kind, _, deployment = str(request.param).partition("-")
    if kind == "memory":
        made: Any = InMemoryChannelLayer()
    else:
        cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
        hosts = (
            request.getfixturevalue("redis_cluster").config_hosts
            if deployment == "cluster"
            else [require_redis()]
        )
        made = cls(hosts=hosts, prefix=unique_prefix(), presence_ttl=2)
    yield made
    await made.flush()
    await made.close()


def strip(listing: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {
        key: sorted(({k: v for k, v in m.items() if k != REF} for m in metas), key=repr)
        for key, metas in listing.items()
    }


async def test_list_shows_one_meta_per_connection(layer: Any) -> None:
    a, b, c = [await layer.new_channel() for _ in range(3)]
    await layer.presence_track("room", a, "alice", {"tab": 1})
    await layer.presence_track("room", b, "alice", {"tab": 2})
    await layer.presence_track("room", c, "bob")
    await layer.presence_track("other", c, "bob")
    assert strip(await layer.presence_list("room")) == {
        "alice": [{"tab": 1}, {"tab": 2}],
        "bob": [{}],
    }
    refs = [
        m[REF] for metas in (await layer.presence_list("room")).values() for m in metas
    ]
    assert len(set(refs)) == 3
    await layer.presence_untrack("room", a)
    await layer.presence_untrack("room", a)  # untracking twice is fine
    assert strip(await layer.presence_list("room")) == {
        "alice": [{"tab": 2}],
        "bob": [{}],
    }
    assert strip(await layer.presence_list("other")) == {"bob": [{}]}
    assert await layer.presence_list("empty") == {}


async def test_burst_of_joins_is_one_diff_and_update_swaps_ref(layer: Any) -> None:
    watcher = await layer.new_channel()
    await layer.group_add("room", watcher)
    channels = [await layer.new_channel() for _ in range(20)]
    for i, channel in enumerate(channels):
        await layer.presence_track("room", channel, f"user{i}", {"i": i})
    diff = await asyncio.wait_for(layer.receive(watcher), 5)
    assert diff["type"] == "presence.diff" and diff["room"] == "room"
    assert sorted(diff["joins"]) == sorted(f"user{i}" for i in range(20))
    assert diff["leaves"] == {}
    ref = diff["joins"]["user0"][0][REF]
    await layer.presence_update("room", channels[0], {"i": 0, "away": True})
    diff = await asyncio.wait_for(layer.receive(watcher), 5)
    assert diff["leaves"] == {"user0": [{"i": 0, REF: ref}]}
    [joined] = diff["joins"]["user0"]
    assert joined[REF] != ref and joined == {"i": 0, "away": True, REF: joined[REF]}
    assert (await layer.presence_list("room"))["user0"] == [joined]
    # An entry that comes and goes inside one burst is in both halves.
    late = await layer.new_channel()
    await layer.presence_track("room", late, "late")
    await layer.presence_untrack("room", late)
    await layer.presence_untrack("room", channels[1])
    diff = await asyncio.wait_for(layer.receive(watcher), 5)
    assert list(diff["joins"]) == ["late"]
    assert sorted(diff["leaves"]) == ["late", "user1"]
    assert diff["joins"]["late"] == diff["leaves"]["late"]


async def test_bad_input_is_refused_with_reasons(layer: Any) -> None:
    channel = await layer.new_channel()
    with pytest.raises(TypeError, match="group name"):
        await layer.presence_track("bad room", channel, "k")
    with pytest.raises(TypeError, match="Presence key"):
        await layer.presence_track("room", channel, "")
    with pytest.raises(TypeError, match="meta must be a dict"):
        await layer.presence_track("room", channel, "k", ["x"])
    with pytest.raises(ValueError, match="presence_ref"):
        await layer.presence_track("room", channel, "k", {REF: "mine"})
    with pytest.raises(LookupError, match="tracks nothing"):
        await layer.presence_update("room", channel, {"x": 1})


async def test_group_size_counts_members_without_messaging_them(layer: Any) -> None:
    channels = [await layer.new_channel() for _ in range(5)]
    assert await layer.group_size("g") == 0
    for channel in channels:
        await layer.group_add("g", channel)
    await layer.group_add("g", channels[0])
    assert await layer.group_size("g") == 5
    await layer.group_discard("g", channels[0])
    assert await layer.group_size("g") == 4


async def test_close_announces_leave_of_what_remains(layer: Any) -> None:
    if isinstance(layer, InMemoryChannelLayer):
        pytest.skip("the in-memory layer keeps its state on close, as in Channels")
    other = type(layer)(hosts=layer.hosts, prefix=layer.prefix, presence_ttl=2)
    watcher = await layer.new_channel()
    await layer.group_add("room", watcher)
    await other.presence_track("room", await other.new_channel(), "gone")
    assert list((await asyncio.wait_for(layer.receive(watcher), 5))["joins"]) == [
        "gone"
    ]
    await other.close()
    diff = await asyncio.wait_for(layer.receive(watcher), 5)
    assert list(diff["leaves"]) == ["gone"]
    assert await layer.presence_list("room") == {}


# A process that tracks an entry, reports, then waits to be killed.
TRACKER = textwrap.dedent(
    """
    import asyncio, sys
    from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer

    async def main(kind, url, prefix):
        cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
        layer = cls(hosts=[url], prefix=prefix, presence_ttl=1)
        await layer.presence_track("room", await layer.new_channel(), "doomed")
        print("tracked", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_killed_process_is_reaped_by_a_live_heartbeat(kind: str) -> None:
    url, prefix = require_redis(), unique_prefix()
    cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
    layer = cls(hosts=[url], prefix=prefix, presence_ttl=1)
    watcher = await layer.new_channel()
    await layer.group_add("room", watcher)
    # This process tracks too, so its heartbeat (not a list) does the reaping.
    await layer.presence_track("room", watcher, "alive")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    tracker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", TRACKER, kind, url, prefix,
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert tracker.stdout is not None
        assert await asyncio.wait_for(tracker.stdout.readline(), 30) == b"tracked\n"
        tracker.send_signal(signal.SIGKILL)
        await tracker.wait()
        async with deadline(5):
            while True:
                diff = await layer.receive(watcher)
                if "doomed" in diff["leaves"]:
                    break
        assert list(await layer.presence_list("room")) == ["alive"]
    finally:
        if tracker.returncode is None:
            tracker.kill()
            await tracker.wait()
        await layer.flush()
        await layer.close()


@pytest.mark.redis
async def test_node_restores_its_entries_after_a_flush() -> None:
    layer = RedisChannelLayer(
        hosts=[require_redis()], prefix=unique_prefix(), presence_ttl=0.6
    )
    channel = await layer.new_channel()
    await layer.presence_track("room", channel, "stays")
    await layer.flush()
    assert await layer.presence_list("room") == {}
    async with deadline(5):
        while await layer.presence_list("room") == {}:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert list(await layer.presence_list("room")) == ["stays"]
    await layer.flush()
    await layer.close()


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["core", "pubsub"])
async def test_heartbeats_during_a_burst_of_tracks_lose_no_entry(kind: str) -> None:
    # Heartbeats every 50 ms while four streams of connections track one
    # after another: a heartbeat's count races the writes, and restoring
    # the room from it would drop the entries written meanwhile.
    cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
    layer = cls(hosts=[require_redis()], prefix=unique_prefix(), presence_ttl=0.15)
    try:

        async def stream(first: int) -> None:
            for i in range(first, first + 500):
                await layer.presence_track("room", f"c.x!{i}", f"user{i}")

        await asyncio.gather(*(stream(n * 500) for n in range(4)))
        assert len(await layer.presence_list("room")) == 2000
        await asyncio.sleep(0.2)  # a few heartbeats more, and still all there
        assert len(await layer.presence_list("room")) == 2000
    finally:
        await layer.flush()
        await layer.close()


@pytest.mark.parametrize("ttl", [0, -1, "10", None, True])
def test_presence_ttl_must_be_positive_seconds(ttl: object) -> None:
    for cls in (RedisChannelLayer, RedisPubSubChannelLayer):
        with pytest.raises(ValueError, match="presence_ttl must be a positive"):
            cls(presence_ttl=ttl)


@pytest.mark.redis
async def test_pubsub_group_size_gives_up_on_a_silent_process_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis.asyncio

    url, prefix = require_redis(), unique_prefix()
    layer = RedisPubSubChannelLayer(hosts=[url], prefix=prefix)
    silent = redis.asyncio.Redis.from_url(url)
    listener = silent.pubsub()
    try:
        await layer.group_add("g", await layer.new_channel())
        await listener.subscribe(f"{prefix}__group_size__")  # hears, never answers
        started = time.monotonic()
        assert await layer.group_size("g") == 1  # this process's answer
        assert 1.5 < time.monotonic() - started < 5
        assert "1 of 2 processes answered" in caplog.text
    finally:
        await listener.aclose()
        await silent.aclose()
        await layer.close()
