"""Event histories (in memory and Redis Streams) and how a stream uses them:
bounds, id order, the catch-up, the gap a full channel leaves, duplicates,
and resuming several groups at once. In process, with real layers and a
real Redis; the servers are in test_streams.py and test_redis_streams.py."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from achannels.generic.sse import (
    AsyncEventStreamConsumer,
    EventHistory,
    InMemoryEventHistory,
)
from achannels.generic.sse._history import id_key
from achannels.layers import InMemoryChannelLayer
from achannels.testing import ApplicationCommunicator
from tests.support.event_stream import Event, EventStreamParser
from tests.support.layers import as_default
from tests.support.redis import require_redis, unique_prefix

TIMEOUT = 5.0


@pytest.fixture
def small_layer() -> Iterator[InMemoryChannelLayer]:
    """The default layer, with room for 3 messages per channel."""
    with as_default(InMemoryChannelLayer(capacity=3)) as layer:
        yield layer


@pytest.fixture
async def redis_history() -> AsyncIterator[EventHistory]:
    from achannels.layers.redis import RedisChannelLayer, RedisEventHistory

    url = require_redis()
    prefix = unique_prefix()
    layer = RedisChannelLayer(hosts=[url], prefix=prefix)
    history = RedisEventHistory(prefix=prefix, max_events=10, max_age=600)
    try:
        with as_default(layer):
            yield history
    finally:
        await history.aclose()
        await layer.flush()
        await layer.close()


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def assert_chained(events: list[dict[str, Any]]) -> None:
    for before, after in itertools.pairwise(events):
        assert after["__history__"][1] == before["event_id"]


async def test_memory_history_keeps_the_newest_max_events_per_group(
    small_layer: InMemoryChannelLayer,
) -> None:
    history = InMemoryEventHistory(max_events=3)
    sent = [await history.group_send("g", {"type": "x", "n": n}) for n in range(5)]
    other = await history.group_send("h", {"type": "x", "n": 9})
    kept = await history.read_after("g", "0-0")
    assert ids(kept) == sent[2:]
    assert [e["n"] for e in kept] == [2, 3, 4]
    assert_chained(kept)
    assert await history.last_id("g") == sent[-1]
    assert ids(await history.read_after("g", sent[2], sent[3])) == [sent[3]]
    assert ids(await history.read_after("h", "0-0")) == [other]


async def test_memory_history_forgets_events_older_than_max_age(
    small_layer: InMemoryChannelLayer,
) -> None:
    history = InMemoryEventHistory(max_age=0.2)
    await history.group_send("g", {"type": "x"})
    assert len(await history.read_after("g", "0-0")) == 1
    async with asyncio.timeout(TIMEOUT):
        while await history.read_after("g", "0-0"):  # noqa: ASYNC110 - time passes
            await asyncio.sleep(0.05)
    assert await history.last_id("g") is None


async def test_memory_history_drops_groups_nobody_published_to_within_max_age(
    small_layer: InMemoryChannelLayer,
) -> None:
    history = InMemoryEventHistory(max_age=0.2)
    for n in range(100):
        await history.group_send(f"user.{n}", {"type": "x"})
    async with asyncio.timeout(TIMEOUT):
        # Publishing to one group clears out the others once they expired.
        while len(history._events) > 1:
            await asyncio.sleep(0.05)
            await history.group_send("live", {"type": "x"})
    assert list(history._events) == ["live"]


async def test_history_refuses_keys_it_sets_and_messages_without_type(
    small_layer: InMemoryChannelLayer,
) -> None:
    history = InMemoryEventHistory()
    with pytest.raises(ValueError, match="event_id"):
        await history.group_send("g", {"type": "x", "event_id": 1})
    with pytest.raises(ValueError, match="'type'"):
        await history.group_send("g", {"text": "no type"})
    with pytest.raises(TypeError, match="group name"):
        await history.group_send("bad group!", {"type": "x"})
    assert await history.read_after("g", "0-0") == []


async def test_memory_history_isolates_stored_events_from_the_sender(
    small_layer: InMemoryChannelLayer,
) -> None:
    history = InMemoryEventHistory()
    payload = {"items": [1]}
    await history.group_send("g", {"type": "x", "payload": payload})
    payload["items"].append(2)
    (stored,) = await history.read_after("g", "0-0")
    assert stored["payload"] == {"items": [1]}


@pytest.mark.redis
async def test_redis_history_trims_to_about_max_events_with_a_hole_free_chain(
    redis_history: EventHistory,
) -> None:
    sent = [
        await redis_history.group_send("g", {"type": "x", "n": n}) for n in range(300)
    ]
    kept = await redis_history.read_after("g", "0-0")
    # MAXLEN ~ trims whole stream nodes (100 entries by default).
    assert 10 <= len(kept) <= 10 + 100
    assert ids(kept) == sent[-len(kept) :]
    assert_chained(kept)
    assert await redis_history.last_id("g") == sent[-1]
    assert ids(await redis_history.read_after("g", sent[-3], sent[-2])) == [sent[-2]]


@pytest.mark.redis
async def test_sync_code_publishes_through_async_to_sync(
    redis_history: EventHistory,
) -> None:
    def publish_from_a_thread() -> list[str]:
        # Each async_to_sync call from a plain thread runs on a new loop.
        return [
            async_to_sync(redis_history.group_send)("g", {"type": "x", "n": n})
            for n in range(5)
        ]

    published = await asyncio.to_thread(publish_from_a_thread)
    assert ids(await redis_history.read_after("g", "0-0")) == published


@pytest.mark.redis
async def test_redis_history_ids_are_ordered_across_publishers(
    redis_history: EventHistory,
) -> None:
    from achannels.layers.redis import RedisEventHistory

    assert isinstance(redis_history, RedisEventHistory)
    other = RedisEventHistory(prefix=redis_history.prefix, max_events=1000)
    try:
        published = await asyncio.gather(
            *(
                (redis_history if n % 2 else other).group_send("g", {"type": "x"})
                for n in range(40)
            )
        )
    finally:
        await other.aclose()
    stored = await redis_history.read_after("g", "0-0")
    assert sorted(ids(stored), key=id_key) == ids(stored)
    assert set(ids(stored)) == set(published)
    assert_chained(stored)


history = InMemoryEventHistory(max_events=50)


class Feed(AsyncEventStreamConsumer):
    history = history
    groups = ["g"]
    heartbeat_interval = None

    async def feed_item(self, message: dict[str, Any]) -> None:
        await self.send_event(message["n"])

    async def resume_gap(self, group: str) -> None:
        await self.send_event(group, event="reload")


class TwoFeeds(Feed):
    groups = ["a", "b"]


async def open_feed(
    app: type[AsyncEventStreamConsumer], last_event_id: str | None = None
) -> tuple[ApplicationCommunicator, EventStreamParser]:
    headers = [(b"last-event-id", last_event_id.encode())] if last_event_id else []
    scope = {"type": "http", "method": "GET", "path": "/feed/", "headers": headers}
    communicator = ApplicationCommunicator(app.as_asgi(), scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(TIMEOUT)
    assert start["status"] == 200
    return communicator, EventStreamParser()


async def read_events(
    communicator: ApplicationCommunicator, parser: EventStreamParser, count: int
) -> list[Event]:
    events: list[Event] = []
    while len(events) < count:
        chunk = await communicator.receive_output(TIMEOUT)
        events.extend(parser.feed(chunk["body"]))
    return events


async def test_events_a_full_channel_dropped_reach_the_stream_from_history(
    small_layer: InMemoryChannelLayer,
) -> None:
    communicator, parser = await open_feed(Feed)
    await read_events(communicator, parser, 0)
    # A burst: the stream's channel holds 3, group_send skips it after that.
    for n in range(12):
        await history.group_send("g", {"type": "feed.item", "n": n})
    events: list[Event] = []
    while not await communicator.receive_nothing(0.1):
        events += await read_events(communicator, parser, 1)
    assert len(events) < 12, "nothing was dropped: the test proves nothing"
    # The next event shows the stream it missed some: it reads them.
    await history.group_send("g", {"type": "feed.item", "n": 12})
    events += await read_events(communicator, parser, 13 - len(events))
    assert [e.data for e in events] == [str(n) for n in range(13)]
    assert [e.last_event_id for e in events] == ids(
        (await history.read_after("g", "0-0"))[-13:]
    )
    # A late live copy of an event already sent is dropped.
    (channel,) = small_layer.groups["g"]
    stale = (await history.read_after("g", "0-0"))[-5]
    await small_layer.send(channel, stale)
    assert await communicator.receive_nothing(0.2)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)
    assert "g" not in small_layer.groups


async def test_resume_with_lost_history_reports_the_gap_then_replays_the_rest(
    small_layer: InMemoryChannelLayer,
) -> None:
    short = InMemoryEventHistory(max_events=2)

    class ShortFeed(Feed):
        history = short

    first = await short.group_send("g", {"type": "feed.item", "n": 0})
    for n in range(1, 5):
        await short.group_send("g", {"type": "feed.item", "n": n})
    communicator, parser = await open_feed(ShortFeed, last_event_id=first)
    events = await read_events(communicator, parser, 3)
    assert [(e.type, e.data) for e in events] == [
        ("reload", "g"),
        ("message", "3"),
        ("message", "4"),
    ]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)


async def test_streams_of_several_groups_resume_each_group_where_it_was(
    small_layer: InMemoryChannelLayer,
) -> None:
    communicator, parser = await open_feed(TwoFeeds)
    await read_events(communicator, parser, 0)
    await history.group_send("a", {"type": "feed.item", "n": "a1"})
    await history.group_send("b", {"type": "feed.item", "n": "b1"})
    events = await read_events(communicator, parser, 2)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)
    resume_at = events[-1].last_event_id
    assert resume_at.count("=") == 2
    # Missed while away: one event in each group.
    await history.group_send("b", {"type": "feed.item", "n": "b2"})
    await history.group_send("a", {"type": "feed.item", "n": "a2"})
    communicator, parser = await open_feed(TwoFeeds, last_event_id=resume_at)
    replayed = await read_events(communicator, parser, 2)
    assert sorted(e.data for e in replayed) == ["a2", "b2"]
    await history.group_send("a", {"type": "feed.item", "n": "a3"})
    (live,) = await read_events(communicator, parser, 1)
    assert live.data == "a3"
    assert await communicator.receive_nothing(0.1)
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)


async def test_a_live_gap_the_history_no_longer_holds_is_reported(
    small_layer: InMemoryChannelLayer,
) -> None:
    short = InMemoryEventHistory(max_events=2)

    class ShortFeed(Feed):
        history = short

    communicator, parser = await open_feed(ShortFeed)
    await read_events(communicator, parser, 0)
    for n in range(12):  # the channel holds 3, the history the last 2
        await short.group_send("g", {"type": "feed.item", "n": n})
    events: list[Event] = []
    while not await communicator.receive_nothing(0.1):
        events += await read_events(communicator, parser, 1)
    delivered = len(events)
    await short.group_send("g", {"type": "feed.item", "n": 12})
    events += await read_events(communicator, parser, 3)
    assert [(e.type, e.data) for e in events[delivered:]] == [
        ("reload", "g"),
        ("message", "11"),
        ("message", "12"),
    ]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)


async def test_the_dropped_end_of_a_burst_arrives_by_the_next_heartbeat(
    small_layer: InMemoryChannelLayer,
) -> None:
    class BeatingFeed(Feed):
        heartbeat_interval = 0.2

    communicator, parser = await open_feed(BeatingFeed)
    # The channel holds 3: most of the burst is dropped, and no later event
    # comes to show the stream the gap.
    for n in range(12):
        await history.group_send("g", {"type": "feed.item", "n": n})
    events = await read_events(communicator, parser, 12)
    assert [e.data for e in events] == [str(n) for n in range(12)]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(TIMEOUT)
