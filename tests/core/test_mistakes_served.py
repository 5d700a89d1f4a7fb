"""Newcomer mistakes through real servers: what the log and the client show
(issue 13). One log entry per mistake, naming what to look at."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.reliability import APP
from tests.support.servers import RunningServer, free_port, serve

TIMEOUT = 10

#: Servers without the ``websocket.http.response`` extension refuse a
#: handshake the application closes with a bare 403.
NO_HTTP_DENIAL: set[str] = set()


@pytest.fixture
def server(server_kind: str) -> Iterator[RunningServer]:
    with serve("tests.apps.mistakes_app:application", server_kind) as running:
        yield running


def wait_for_log(server: RunningServer, needle: str) -> str:
    return server.wait_for_output(needle, TIMEOUT)


def settle(server: RunningServer) -> str:
    """The log once the server has had a moment to print anything else
    about the connection (a second traceback would follow the first)."""
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return server.output()


async def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=TIMEOUT):
            pass
    return refused.value.response.status_code


async def test_connect_error_is_logged_once_with_consumer_and_path(
    server: RunningServer,
) -> None:
    status = await refused_status(f"{server.ws_url}/ws/failing/")
    assert status in (403, 500)
    wait_for_log(server, "connect failed on purpose")
    log = settle(server)
    assert log.count("RuntimeError: connect failed on purpose") == 1, log
    assert log.count("Traceback") == 1, log
    assert "ERROR achannels.websocket: FailingConnect failed before accepting " in log
    assert "WebSocket /ws/failing/; disconnect() does not run" in log, log
    assert "room_group_name" not in log, log  # disconnect() did not run
    assert "disconnect handling failed" not in log, log


async def test_missing_layer_error_names_alias_and_how_to_configure(
    server: RunningServer,
) -> None:
    await refused_status(f"{server.ws_url}/ws/no-layer/")
    wait_for_log(server, "group_add")
    log = settle(server)
    assert log.count("Traceback") == 1, log
    assert "NoLayer.channel_layer is None" in log, log
    assert "alias 'unconfigured'" in log, log
    assert "CHANNEL_LAYERS" in log, log


async def test_unmatched_websocket_route_is_404_with_one_warning(
    server: RunningServer, server_kind: str
) -> None:
    status = await refused_status(f"{server.ws_url}/ws/nowhere/")
    assert status == (403 if server_kind in NO_HTTP_DENIAL else 404)
    log = wait_for_log(server, "No route found for websocket path '/ws/nowhere/'")
    assert "WARNING achannels.routing: No route found for websocket" in log, log
    assert "Traceback" not in settle(server)


async def test_unmatched_http_route_is_404_with_one_warning(
    server: RunningServer,
) -> None:
    def get() -> int:
        try:
            with urllib.request.urlopen(f"{server.url}/nowhere", timeout=TIMEOUT):
                return 200
        except urllib.error.HTTPError as error:
            return error.code

    assert await asyncio.to_thread(get) == 404
    wait_for_log(server, "No route found for http path '/nowhere'")
    assert "Traceback" not in settle(server)


async def test_redis_down_at_start_warns_once_naming_host_then_cannot_reach(
    server_kind: str,
) -> None:
    port = free_port()  # nothing listens there
    env = {
        "RELIABILITY_LAYER": "redis",
        "RELIABILITY_REDIS_URL": f"redis://127.0.0.1:{port}/0",
    }
    with serve(APP, server_kind, env=env) as server:
        startup = wait_for_log(server, "Channel layer 'default'")
        [line] = [line for line in startup.splitlines() if "Channel layer" in line]
        assert "WARNING achannels.routing: " in line, line
        assert f"cannot reach redis://127.0.0.1:{port}/0" in line, line
        status = await refused_status(f"{server.ws_url}/ws/member/room/")
        assert status in (403, 500)
        log = wait_for_log(server, "failed before accepting WebSocket")
        log = settle(server)
    assert log.count("Channel layer 'default'") == 1, log
    assert f"Cannot reach Redis at redis://127.0.0.1:{port}/0" in log, log
    assert "Lost Redis" not in log, log
