"""djangochannelsrestframework 1.3.0, unchanged, on achannels: a DCRF
consumer's actions over a real WebSocket, served by uvicorn and by our
``manage.py runserver`` (the app listed as ``"channels"``)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.support.servers import RunningServer
from tests.support.thirdparty import serve_project

TIMEOUT = 10
RUNSERVER = [
    sys.executable, "-m", "django", "runserver", "127.0.0.1:{port}", "--noreload",
]  # fmt: skip


@pytest.fixture(params=["uvicorn", "runserver"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    command = RUNSERVER if request.param == "runserver" else None
    with serve_project(tmp_path, command=command) as running:
        yield running


async def call(ws: ClientConnection, **request: Any) -> dict[str, Any]:
    await ws.send(json.dumps(request))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return reply


async def test_dcrf_actions_run_on_achannels(server: RunningServer) -> None:
    async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as ws:
        assert await call(ws, action="echo", text="hi", request_id=1) == {
            "errors": [],
            "data": {"text": "hi"},
            "action": "echo",
            "response_status": 200,
            "request_id": 1,
        }
        who = await call(ws, action="whoami", request_id=2)
        assert who["data"] == {
            "channels": "achannels",
            "layer_base": "achannels.layers._base",
            "consumer_base": "achannels.consumer",
            "is_consumer": "True",
        }
        # A sync action: DCRF runs it through database_sync_to_async.
        count = await call(ws, action="count_users", request_id=3)
        assert count["data"] == {"users": 0}
        unknown = await call(ws, action="nope", request_id=4)
        assert unknown["response_status"] == 405


async def test_dcrf_observer_notifies_a_patch_through_the_layer(
    server: RunningServer,
) -> None:
    async with connect(f"{server.ws_url}/ws/users/", open_timeout=TIMEOUT) as ws:
        created = await call(
            ws, action="create", data={"username": "ann"}, request_id=1
        )
        assert created["response_status"] == 201, created
        pk = created["data"]["id"]
        subscribed = await call(ws, action="subscribe_instance", pk=pk, request_id=2)
        assert subscribed["response_status"] == 201
        # post_save -> async_to_sync(group_send) in a worker thread -> the
        # in-memory layer -> this consumer: two messages, in either order.
        patch = {"email": "ann@example.com"}
        await ws.send(json.dumps({"action": "patch", "pk": pk, "data": patch}))
        replies = [
            json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(2)
        ]
        by_action = {reply["action"]: reply for reply in replies}
        assert by_action["patch"]["response_status"] == 200
        assert by_action["update"]["data"]["email"] == "ann@example.com"
        listed = await call(ws, action="list", request_id=3)
        assert [user["username"] for user in listed["data"]] == ["ann"]
