"""Consumers, routing and the in-memory layer through real ASGI servers.

Each test runs against uvicorn (websockets and wsproto implementations) and
hypercorn, in a subprocess on a loopback port, driven by the ``websockets``
client -- what users deploy, not a simulation of it.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.servers import RunningServer, serve

TIMEOUT = 10


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve("tests.apps.core_app:application", server_kind) as running:
        yield running


async def closed_code(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server to close ``ws``; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    received = closed.value.rcvd
    return (received.code, received.reason) if received else (None, None)


async def test_echo_text_and_bytes_with_chosen_subprotocol(
    server: RunningServer,
) -> None:
    async with connect(
        f"{server.ws_url}/ws/echo/",
        subprotocols=["unknown", "chat.v1"],
        open_timeout=TIMEOUT,
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        await ws.send("hello")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello"
        await ws.send(b"\x00\x01binary")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\x01binary"
        await ws.send("")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == ""


async def test_sync_consumer_echoes(server: RunningServer) -> None:
    async with connect(f"{server.ws_url}/ws/sync-echo/", open_timeout=TIMEOUT) as ws:
        for text in ("one", "two", "three"):
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def test_server_close_code_and_reason_reach_client(server: RunningServer) -> None:
    async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as ws:
        await ws.send("close 4001 see you")
        assert await closed_code(ws) == (4001, "see you")


async def test_client_close_code_reaches_disconnect(server: RunningServer) -> None:
    async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as ws:
        await ws.close(4002, "leaving")
    # hypercorn 0.18 does not pass the client's close code to the
    # application: it reports every client-initiated close as 1006.
    expected = 1006 if server.kind == "hypercorn" else 4002
    await asyncio.to_thread(server.wait_for_output, f"echo disconnect code={expected}")


async def test_url_route_kwargs_and_group_broadcast(server: RunningServer) -> None:
    url = f"{server.ws_url}/ws/room/lobby/7/"
    async with (
        connect(url, open_timeout=TIMEOUT) as alice,
        connect(url, open_timeout=TIMEOUT) as bob,
    ):
        for ws in (alice, bob):
            hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert hello == {"joined": "lobby", "kwargs": {"room": "lobby", "seat": 7}}
        await alice.send(json.dumps({"say": "hi bob"}))
        for ws in (alice, bob):
            assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) == {
                "message": {"say": "hi bob"}
            }


async def test_denial_before_accept_is_http_403(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as denied:
        await connect(f"{server.ws_url}/ws/deny/", open_timeout=TIMEOUT)
    assert denied.value.response.status_code == 403


async def test_denial_with_http_response_carries_status_and_body(
    server: RunningServer,
) -> None:
    with pytest.raises(InvalidStatus) as denied:
        await connect(f"{server.ws_url}/ws/deny-http/", open_timeout=TIMEOUT)
    assert denied.value.response.status_code == 401
    assert denied.value.response.body == b"who are you?"


async def test_handler_error_closes_1011_and_server_keeps_serving(
    server: RunningServer,
) -> None:
    async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as bystander:
        async with connect(f"{server.ws_url}/ws/boom/", open_timeout=TIMEOUT) as ws:
            await ws.send("now")
            assert (await closed_code(ws))[0] == 1011
        await bystander.send("still here")
        assert await asyncio.wait_for(bystander.recv(), TIMEOUT) == "still here"
    async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as fresh:
        await fresh.send("new connection")
        assert await asyncio.wait_for(fresh.recv(), TIMEOUT) == "new connection"
    output = await asyncio.to_thread(
        server.wait_for_output, "boom disconnect code=1011"
    )
    assert output.count("RuntimeError: boom: now") == 1


async def test_concurrent_handler_does_not_hold_back_later_frames(
    server: RunningServer,
) -> None:
    async with connect(f"{server.ws_url}/ws/slow-job/", open_timeout=TIMEOUT) as ws:
        await ws.send("slow")
        await ws.send("1")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "fast 1"
        await ws.send("release")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "slow done"


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.status, response.read()


async def test_http_consumer_streams_its_body(server: RunningServer) -> None:
    status, body = await asyncio.to_thread(fetch, f"{server.url}/stream/")
    assert status == 200
    assert body == b"chunk 0\nchunk 1\nchunk 2\ndone\n"


async def test_lifespan_startup_and_shutdown_without_warnings(
    server: RunningServer,
) -> None:
    status, body = await asyncio.to_thread(fetch, f"{server.url}/hello/")
    assert (status, body) == (200, b"hello")
    output = await asyncio.to_thread(server.stop)
    # uvicorn re-raises SIGTERM after a clean shutdown; hypercorn exits 0.
    assert server.proc.returncode in (0, -15), output
    # uvicorn warns that its legacy `websockets` implementation is deprecated;
    # that warning is about the server, not about us.
    lowered = "\n".join(
        line
        for line in output.lower().splitlines()
        if "uvicorndeprecationwarning" not in line and "warnings.warn(" not in line
    )
    for complaint in (
        "lifespan unsupported",
        "unsupported",
        "task was destroyed",
        "traceback",
        "warning",
    ):
        assert complaint not in lowered, output
    if server.kind.startswith("uvicorn"):
        assert "Application startup complete." in output
        assert "Application shutdown complete." in output
