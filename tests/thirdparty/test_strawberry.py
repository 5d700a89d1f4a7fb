"""strawberry-graphql 0.341.2's Channels integration, unchanged, on
achannels: GraphQL over WebSocket (subscriptions, one fed by the channel
layer) and HTTP, through our routers and through strawberry's own
``GraphQLProtocolTypeRouter``, served by uvicorn."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.servers import RunningServer
from tests.support.thirdparty import APP, STRAWBERRY_APP, serve_project

TIMEOUT = 10
PROTOCOL = "graphql-transport-ws"


@pytest.fixture(
    scope="module",
    params=[APP, STRAWBERRY_APP],
    ids=["our-router", "strawberry-router"],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # One server per router for the module: the schema keeps no state.
    with serve_project(tmp_path_factory.mktemp("strawberry"), request.param) as running:
        yield running


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return message


@asynccontextmanager
async def graphql_socket(server: RunningServer) -> AsyncIterator[ClientConnection]:
    """A ``graphql-transport-ws`` connection past its ``connection_ack``."""
    async with connect(
        f"{server.ws_url}/graphql", subprotocols=[PROTOCOL], open_timeout=TIMEOUT
    ) as ws:
        assert ws.subprotocol == PROTOCOL
        await ws.send(json.dumps({"type": "connection_init"}))
        assert await receive(ws) == {"type": "connection_ack"}
        yield ws


async def subscribe(ws: ClientConnection, id: str, query: str) -> None:
    await ws.send(
        json.dumps({"type": "subscribe", "id": id, "payload": {"query": query}})
    )


async def test_subscription_streams_then_completes(server: RunningServer) -> None:
    async with graphql_socket(server) as ws:
        await subscribe(ws, "1", "subscription { count(to: 3) }")
        messages = [await receive(ws) for _ in range(4)]
    assert messages == [
        {"type": "next", "id": "1", "payload": {"data": {"count": number}}}
        for number in range(3)
    ] + [{"type": "complete", "id": "1"}]


async def test_subscription_fed_by_a_group_on_the_channel_layer(
    server: RunningServer,
) -> None:
    async with graphql_socket(server) as listener:
        await subscribe(listener, "room", "subscription { room }")
        # "joined" comes once the consumer is in the group: no race to sleep on.
        joined = await receive(listener)
        assert joined["payload"] == {"data": {"room": "joined"}}
        async with graphql_socket(server) as speaker:
            await subscribe(speaker, "say", 'mutation { say(text: "yo") }')
            said = await receive(speaker)
            assert said["payload"] == {"data": {"say": True}}
        heard = await receive(listener)
        assert heard == {
            "type": "next",
            "id": "room",
            "payload": {"data": {"room": "yo"}},
        }
        await listener.send(json.dumps({"type": "complete", "id": "room"}))


async def test_query_over_http(server: RunningServer) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.post(
            f"{server.url}/graphql", json={"query": "{ hello }"}
        )
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "world"}}
