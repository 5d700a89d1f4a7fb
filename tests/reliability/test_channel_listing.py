"""A crowd of connections through a real server: each consumer's channel is
listed in the in-memory layer's ``channels`` while it is connected, as
Channels lists it (even for consumers that never read ``channel_name``, whose
listener task only starts when a message arrives), and the crowd leaving at
once leaves no channel, group membership, consumer or task behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.reliability import APP, TIMEOUT, wait_for_numbers
from tests.support.servers import RunningServer, serve

CROWD = 50


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve(APP, server_kind, extra_args=["--log-level", "warning"]) as s:
        yield s


async def crowd(server: RunningServer, route: str) -> list[ClientConnection]:
    return list(
        await asyncio.gather(
            *(
                connect(f"{server.ws_url}/{route}", open_timeout=TIMEOUT)
                for _ in range(CROWD)
            )
        )
    )


async def test_crowd_channels_listed_while_connected_and_gone_after(
    server: RunningServer,
) -> None:
    idle = await wait_for_numbers(server, {"consumers": 0, "channels": 0})
    quiet = await crowd(server, "ws/json/")  # never read channel_name
    members = await crowd(server, "ws/member/crowd/")
    await wait_for_numbers(
        server,
        {
            "consumers": 2 * CROWD,
            "channels": 2 * CROWD,
            "group_members": {"crowd": CROWD},
            "queued": 0,
        },
    )
    await quiet[0].send(json.dumps({"hello": 1}))
    reply = json.loads(await asyncio.wait_for(quiet[0].recv(), TIMEOUT))
    assert reply == {"echo": {"hello": 1}}
    await members[0].send("to all")
    for ws in members:
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "to all"

    await asyncio.gather(*(ws.close() for ws in quiet + members))
    await wait_for_numbers(
        server,
        {
            "consumers": 0,
            "channels": 0,
            "queued": 0,
            "group_members": {},
            "tasks": idle["tasks"],
        },
    )
