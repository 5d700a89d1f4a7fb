"""Event streams through real uvicorn, hypercorn and granian processes, read
by an httpx streaming client with the browser's parsing rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from tests.support.event_stream import Event, EventStream, open_stream
from tests.support.servers import RunningServer, serve

APP = "tests.apps.sse_app:application"
KINDS = ("uvicorn-websockets-sansio", "hypercorn", "granian")
TIMEOUT = 10.0


@pytest.fixture(params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with serve(APP, str(request.param)) as running:
        yield running


async def stats(server: RunningServer) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(f"{server.url}/stats/")
        data: dict[str, int] = response.json()
        return data


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT
) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.05)


async def publish(
    server: RunningServer, group: str, count: int, text: str
) -> list[str]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(
            f"{server.url}/publish/",
            content=json.dumps(
                {"group": group, "count": count, "text": text, "delay": 0.005}
            ),
        )
        ids: list[str] = response.json()
        return ids


async def test_events_are_framed_for_the_browser_with_stream_headers(
    server: RunningServer,
) -> None:
    async with open_stream(f"{server.url}/frames/") as stream:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert headers["x-stream"] == "frames"
        events = await stream.rest()
        assert events == [
            Event("message", "one line", ""),
            Event("multi", "two\nlines", "7"),
            Event("message", "cr\nand crlf\nend", "7"),
            Event("obj", '{"json":["é",1]}', "7"),
            Event("message", " leading space", "7"),
        ]
        assert stream.parser.retry == 2500
        assert " a comment" in stream.parser.comments


async def test_quiet_stream_gets_a_comment_every_heartbeat_interval(
    server: RunningServer,
) -> None:
    async with open_stream(f"{server.url}/quiet/?beat=0.2") as stream:
        async with asyncio.timeout(TIMEOUT):
            while len(stream.parser.comments) < 4:
                assert await stream.read_chunk()
        assert stream.parser.last_event_id == ""


async def test_client_leaving_ends_streams_at_once_and_leaves_no_task(
    server: RunningServer,
) -> None:
    before = await stats(server)
    # A crowd of quiet streams: no event and no heartbeat (60 s) would make
    # the server write, so only watching http.disconnect can end them, and
    # their groups must be left.
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as client:
        async with asyncio.TaskGroup() as group:
            opened = [asyncio.Event() for _ in range(30)]
            leave = asyncio.Event()

            async def hold(ready: asyncio.Event, path: str) -> None:
                async with open_stream(f"{server.url}{path}", client=client) as s:
                    await s.read_chunk()  # the opening comment: it is live
                    ready.set()
                    await leave.wait()

            for n, ready in enumerate(opened):
                # Half of them in a group (feeds with history), half not.
                path = f"/feed/crowd{n % 3}/" if n % 2 else "/quiet/"
                group.create_task(hold(ready, path))
            async with asyncio.timeout(TIMEOUT):
                for ready in opened:
                    await ready.wait()
            during = await stats(server)
            assert during["pumps"] >= before["pumps"] + 30  # a heartbeat each
            assert during["members"] == before["members"] + 15
            leave.set()

    async def all_ended() -> bool:
        now = await stats(server)
        return (
            now["disconnects"] == before["disconnects"] + 30
            and now["pumps"] == before["pumps"]
            and now["members"] == before["members"]
        )

    # Well inside the 60 s heartbeat: the consumers noticed by themselves.
    left = asyncio.get_running_loop().time()
    await wait_for(all_ended, timeout=5.0)
    print(
        f"[figures] {server.kind}: 30 streams ended, groups left, no pump left "
        f"{asyncio.get_running_loop().time() - left:.2f} s after the clients left"
    )


async def test_generator_streams_tokens_then_ends(server: RunningServer) -> None:
    async with open_stream(f"{server.url}/tokens/?n=20&delay=0.01") as stream:
        events = await stream.rest()
    assert [e.data for e in events] == [f'{{"token":{i}}}' for i in range(20)] + [
        "[DONE]"
    ]
    assert {e.type for e in events[:-1]} == {"token"}


async def test_slow_client_holds_back_the_generator_and_bounds_memory(
    server: RunningServer,
) -> None:
    event_size = 64 * 1024
    before = await stats(server)
    async with open_stream(f"{server.url}/firehose/") as stream:
        await stream.next_event()
        rss_before = server.rss()

        # The client stops reading. Without backpressure the generator would
        # produce gigabytes in these seconds; with it, the server stops once
        # the sockets' buffers are full.
        async def produced() -> int:
            return (await stats(server))["produced"]

        await asyncio.sleep(1.0)
        settled = await produced()
        await asyncio.sleep(1.0)
        assert await produced() - settled <= 2, "the generator ran on"
        ahead = settled - before["produced"] - 1  # the client read one event
        buffered = ahead * event_size
        grown = server.rss() - rss_before
        print(
            f"[figures] {server.kind}: stopped reader, generator {ahead} "
            f"events ahead ({buffered / 2**20:.1f} MiB, in socket buffers), "
            f"server RSS +{grown / 2**20:.1f} MiB"
        )
        assert buffered < 64 * 1024 * 1024, buffered
        assert grown < 64 * 1024 * 1024
        # Reading again lets it go on.
        for _ in range(50):
            await stream.next_event()
        assert await produced() > settled

    async def generator_closed() -> bool:
        return (await stats(server))["generator_closed"] > before["generator_closed"]

    # The client left: the generator's finally ran.
    await wait_for(generator_closed, timeout=5.0)


async def read_feed_until(
    stream: EventStream, texts: list[str], last: str, leave_after: int | None
) -> bool:
    """Append what arrives to ``texts``; ``True`` once ``last`` arrived,
    ``False`` after ``leave_after`` events (the client leaves)."""
    received = 0
    while True:
        event = await stream.next_event()
        texts.append(event.data)
        received += 1
        if event.data == last:
            return True
        if leave_after is not None and received >= leave_after:
            return False


async def test_reconnect_resumes_across_the_seam_without_gap_or_duplicate(
    server: RunningServer,
) -> None:
    total, readers = 240, 8
    publishing = False
    rejoined_while_publishing = 0

    async def reader(n: int) -> list[str]:
        nonlocal rejoined_while_publishing
        texts: list[str] = []
        last_id: str | None = None
        done = False
        while not done:
            headers = {"last-event-id": last_id} if last_id else None
            url = f"{server.url}/feed/seam/"
            async with open_stream(url, headers, client=client) as stream:
                await stream.read_chunk()  # opened: joined the group
                joined[n].set()
                rejoined_while_publishing += publishing and last_id is not None
                done = await read_feed_until(stream, texts, f"e{total - 1}", 5 + n)
                last_id = stream.last_event_id or last_id
        return texts

    joined = [asyncio.Event() for _ in range(readers)]
    # One client: leaving a stream unread closes its connection.
    client = httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None))
    async with client, asyncio.timeout(60):
        tasks = [asyncio.create_task(reader(n)) for n in range(readers)]
        for event in joined:
            await event.wait()
        # Published one by one (5 ms apart) while the readers leave and
        # come back: many of them join as an event is being published.
        publishing = True
        await publish(server, "seam", total, "e")
        publishing = False
        results = await asyncio.gather(*tasks)
    for texts in results:
        assert texts == [f"e{i}" for i in range(total)]
    assert rejoined_while_publishing >= readers, "the seam was never crossed live"
