"""Resuming across processes: two servers (uvicorn, and hypercorn or
granian) share groups and history through Redis (the Redis layer and
``RedisEventHistory``), both publish at once,
and a client that leaves one server and comes back on the other gets every
event once, in id order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from achannels.generic.sse._history import id_key
from tests.support.event_stream import open_stream
from tests.support.redis import require_redis, unique_prefix
from tests.support.servers import RunningServer, serve

pytestmark = pytest.mark.redis

APP = "tests.apps.sse_app:application"
TIMEOUT = 10.0


@pytest.fixture(params=["hypercorn", "granian"])
def servers(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RunningServer, RunningServer]]:
    env = {"SSE_REDIS_URL": require_redis(), "SSE_PREFIX": unique_prefix()}
    with (
        serve(APP, "uvicorn-websockets-sansio", env=env) as first,
        serve(APP, str(request.param), env=env) as second,
    ):
        yield first, second


async def publish(server: RunningServer, count: int, text: str) -> list[str]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(
            f"{server.url}/publish/",
            content=json.dumps(
                {"group": "shared", "count": count, "text": text, "delay": 0.005}
            ),
        )
        ids: list[str] = response.json()
        return ids


async def test_stream_resumes_on_another_process_without_gap_or_duplicate(
    servers: tuple[RunningServer, RunningServer],
) -> None:
    total = 150
    received: list[tuple[str, str]] = []  # (id, text)
    opened = asyncio.Event()

    async def read() -> None:
        last_id: str | None = None
        hop = 0
        while len(received) < 2 * total:
            server = servers[hop % 2]
            headers = {"last-event-id": last_id} if last_id else None
            async with open_stream(f"{server.url}/feed/shared/", headers) as stream:
                await stream.read_chunk()
                opened.set()
                for _ in range(23):  # then hop to the other server
                    event = await stream.next_event()
                    received.append((event.last_event_id, event.data))
                    if len(received) == 2 * total:
                        break
                last_id = stream.last_event_id
            hop += 1

    async with asyncio.timeout(60):
        reader = asyncio.create_task(read())
        await opened.wait()
        published = await asyncio.gather(
            publish(servers[0], total, "a"), publish(servers[1], total, "b")
        )
        await reader
    got_ids = [event_id for event_id, _ in received]
    assert got_ids == sorted(published[0] + published[1], key=id_key)
    texts = [text for _, text in received]
    assert sorted(texts) == sorted(
        [f"a{n}" for n in range(total)] + [f"b{n}" for n in range(total)]
    )
    # Each publisher's own events arrive in the order it published them.
    for prefix in "ab":
        mine = [t for t in texts if t.startswith(prefix)]
        assert mine == [f"{prefix}{n}" for n in range(total)]
