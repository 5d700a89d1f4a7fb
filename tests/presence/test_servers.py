"""Presence through real uvicorn processes: what a fleet sharing rooms sees.

Two processes on one Redis, a client in one room on each; a process that
dies by SIGKILL (no cleanup at all) loses its entries within the TTL and the
survivors get the leave diff. Clean ends (client drop, handler crash, server
shutdown) announce the leave at once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import pytest
import websockets

from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from tests.presence import deadline
from tests.support.redis import require_redis, unique_prefix
from tests.support.servers import RunningServer, serve

APP = "tests.presence.app:application"
TTL = 2.0


class Client:
    """One WebSocket client of the presence app, keeping what it was sent."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.state: dict[str, Any] = {}
        self.diffs: list[dict[str, Any]] = []

    async def next(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        async with deadline(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame["type"] == "presence.diff":
                    self.diffs.append(frame)
                if frame["type"] == kind:
                    return dict(frame)

    async def wait_leave(self, key: str, timeout: float) -> dict[str, Any]:
        return await self.wait_diff("leaves", key, timeout)

    async def wait_join(self, key: str, timeout: float = 20.0) -> dict[str, Any]:
        return await self.wait_diff("joins", key, timeout)

    async def wait_diff(self, side: str, key: str, timeout: float) -> dict[str, Any]:
        """The next ``presence.diff`` whose ``side`` (joins/leaves) has ``key``."""
        async with deadline(timeout):
            while True:
                diff = await self.next("presence.diff", timeout)
                if key in diff[side]:
                    return diff


@asynccontextmanager
async def connect(server: RunningServer, room: str, key: str) -> AsyncIterator[Client]:
    url = f"{server.ws_url}/ws/room/{room}/?key={key}"
    async with websockets.connect(url, open_timeout=10) as ws:
        client = Client(ws)
        client.state = await client.next("state")
        yield client


def redis_servers(kind: str, count: int) -> Iterator[tuple[list[RunningServer], Any]]:
    url, prefix = require_redis(), unique_prefix()
    env = {
        "PRESENCE_LAYER": kind,
        "PRESENCE_REDIS_URL": url,
        "PRESENCE_PREFIX": prefix,
        "PRESENCE_TTL": str(TTL),
    }
    cls = RedisChannelLayer if kind == "core" else RedisPubSubChannelLayer
    with ExitStack() as stack:
        servers = [stack.enter_context(serve(APP, env=env)) for _ in range(count)]
        yield servers, cls(hosts=[url], prefix=prefix, presence_ttl=TTL)


@pytest.fixture(params=["core", "pubsub"])
def two_servers(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[list[RunningServer], Any]]:
    yield from redis_servers(request.param, 2)


@pytest.mark.redis
async def test_sigkilled_process_entries_vanish_within_ttl_with_leave_diff(
    two_servers: tuple[list[RunningServer], Any],
) -> None:
    (doomed, survivor), layer = two_servers
    async with (
        connect(survivor, "r", "bob") as bob,
        connect(survivor, "r", "carol") as carol,
    ):
        async with connect(doomed, "r", "alice") as alice:
            assert set(alice.state["members"]) == {"alice", "bob", "carol"}
            await bob.wait_join("alice")
            listing = await layer.presence_list("room.r")
            assert sorted(listing) == ["alice", "bob", "carol"]
            doomed.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            doomed.proc.wait(10)
            # Listing hides the dead node's entries once its lease lapses.
            async with deadline(TTL + 2):
                while "alice" in await layer.presence_list("room.r"):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert time.monotonic() - killed_at <= TTL + 1
            # Both survivors hear it (one diff, from whoever reaped it).
            for client in (bob, carol):
                diff = await client.wait_leave("alice", TTL * 2 + 2)
                assert diff["leaves"]["alice"][0]["pid"] == doomed.proc.pid
        assert sorted(await layer.presence_list("room.r")) == ["bob", "carol"]
    await layer.close()


@pytest.mark.redis
@pytest.mark.parametrize("how", ["client closes", "handler crashes", "server stops"])
async def test_connection_end_announces_leave_across_processes(
    two_servers: tuple[list[RunningServer], Any], how: str
) -> None:
    (first, second), layer = two_servers
    async with connect(second, "r", "bob") as bob:
        async with connect(first, "r", "alice") as alice:
            await bob.wait_join("alice")
            started = time.monotonic()
            if how == "handler crashes":
                await alice.ws.send(json.dumps("crash"))
            elif how == "server stops":
                first.stop(signal.SIGTERM)
        # A clean end announces at once, well inside the TTL.
        await bob.wait_leave("alice", TTL)
        assert time.monotonic() - started < TTL
        assert list(await layer.presence_list("room.r")) == ["bob"]
    await layer.close()


@pytest.mark.redis
async def test_update_reaches_other_process_as_join_and_leave_of_refs(
    two_servers: tuple[list[RunningServer], Any],
) -> None:
    (first, second), layer = two_servers
    async with (
        connect(second, "r", "bob") as bob,
        connect(first, "r", "alice") as alice,
    ):
        joined = None
        while joined is None:
            joined = (await bob.next("presence.diff"))["joins"].get("alice")
        await alice.ws.send(json.dumps({"meta": {"status": "away"}}))
        diff = await bob.next("presence.diff")
        while "alice" not in diff["joins"]:
            diff = await bob.next("presence.diff")
        assert diff["leaves"]["alice"] == joined
        [new] = diff["joins"]["alice"]
        assert new == {"status": "away", "presence_ref": new["presence_ref"]}
        assert new["presence_ref"] != joined[0]["presence_ref"]
        assert (await layer.presence_list("room.r"))["alice"] == [new]
    await layer.close()


async def test_fifty_clients_join_in_few_diffs_and_all_leave_on_memory() -> None:
    with serve(APP, env={"PRESENCE_LAYER": "memory"}) as server:
        async with connect(server, "crowd", "watcher") as watcher:
            url = f"{server.ws_url}/ws/room/crowd/?key="
            sockets = await asyncio.gather(
                *(
                    websockets.connect(f"{url}user{i}", open_timeout=10)
                    for i in range(50)
                )
            )
            seen: set[str] = set()
            diffs = 0
            async with deadline(10):
                while len(seen) < 50:
                    diff = await watcher.next("presence.diff")
                    diffs += 1
                    seen |= set(diff["joins"]) - {"watcher"}
            # Batched: a burst of 50 joins arrives in a handful of diffs.
            assert diffs < 25
            await asyncio.gather(*(ws.close() for ws in sockets))
            left: set[str] = set()
            async with deadline(10):
                while len(left) < 50:
                    left |= set((await watcher.next("presence.diff"))["leaves"])
            await watcher.ws.send(json.dumps("list"))
            assert list((await watcher.next("state"))["members"]) == ["watcher"]


async def test_sync_consumer_tracks_and_leaves() -> None:
    with serve(APP, env={"PRESENCE_LAYER": "memory"}) as server:
        async with connect(server, "s", "async") as watcher:
            url = f"{server.ws_url}/ws/sync-room/s/?key=sync"
            async with websockets.connect(url, open_timeout=10) as ws:
                state = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert state["members"]["sync"] == [
                    {
                        "sync": True,
                        "presence_ref": state["members"]["sync"][0]["presence_ref"],
                    }
                ]
                # (Closing inside the join's burst would cancel join and leave.)
                while "sync" not in (await watcher.next("presence.diff"))["joins"]:
                    pass
            await watcher.wait_leave("sync", 10)


@pytest.mark.redis
async def test_group_size_counts_members_in_every_process(
    two_servers: tuple[list[RunningServer], Any],
) -> None:
    (first, second), layer = two_servers
    async with (
        connect(first, "g", "a") as _,
        connect(second, "g", "b") as _,
        connect(second, "g", "c") as _,
    ):
        assert await layer.group_size("room.g") == 3
        assert await layer.group_size("room.nobody") == 0
    async with deadline(10):
        while await layer.group_size("room.g"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await layer.close()
