"""channels-postgres 1.1.4, configured by its ``BACKEND`` string, as the
channel layer of consumers served by uvicorn and of a second process.

It needs PostgreSQL at 127.0.0.1:5432 (``tests/support/postgres.py``); each
test gets a database of its own.

Two quirks of the package, seen with real Channels too, shape the test:
it drops a NOTIFY that arrives before the receiving channel's LISTEN task is
up, so each client round-trips until one message comes back before the real
ones; and two consumers whose first ``receive()`` overlap make it start two
LISTEN tasks (every later message then arrives twice), so clients connect
one after the other.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.support.postgres import PG_HOST, PG_PORT, scratch_database
from tests.support.thirdparty import project_env, run_in_project, serve_project

TIMEOUT = 10.0
WARM_UP_WAIT = 0.5


async def receive_text(ws: ClientConnection) -> dict[str, Any]:
    """The next room message, skipping warm-up echoes that arrive late."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if not message["text"].startswith("warm-"):
            return message


async def warm_up(ws: ClientConnection, name: str) -> None:
    """Send until one message comes back through the layer, within TIMEOUT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    attempt = 0
    while loop.time() < deadline:
        attempt += 1
        await ws.send(json.dumps({"text": f"warm-{name}-{attempt}"}))
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), WARM_UP_WAIT)
                if json.loads(raw)["text"].startswith(f"warm-{name}-"):
                    return
        except asyncio.TimeoutError:
            continue
    raise AssertionError(f"{name}: no round trip through channels-postgres")


async def test_channels_postgres_layer_by_backend_string(tmp_path: Path) -> None:
    room = f"room{uuid.uuid4().hex[:8]}"
    with scratch_database() as database:
        pg = {
            "THIRDPARTY_PG_DB": database,
            "THIRDPARTY_PG_HOST": PG_HOST,
            "THIRDPARTY_PG_PORT": PG_PORT,
        }
        with serve_project(tmp_path, **pg) as server:
            url = f"{server.ws_url}/ws/room/{room}/"
            async with connect(url, open_timeout=TIMEOUT) as a:
                await warm_up(a, "a")
                async with connect(url, open_timeout=TIMEOUT) as b:
                    await warm_up(b, "b")
                    await a.send(json.dumps({"text": "hello"}))
                    for ws in (a, b):
                        assert await receive_text(ws) == {
                            "text": "hello",
                            "layer": "PostgresChannelLayer",
                        }
                    # Another process builds the layer from the same settings.
                    sent = await asyncio.to_thread(
                        run_in_project,
                        f"""
                        import json
                        from asgiref.sync import async_to_sync
                        from channels.layers import get_channel_layer
                        from achannels.layers import BaseChannelLayer
                        layer = get_channel_layer()
                        async_to_sync(layer.group_send)(
                            {room!r}, {{"type": "room.message", "text": "outside"}}
                        )
                        print(json.dumps([type(layer).__module__,
                                          isinstance(layer, BaseChannelLayer)]))
                        """,
                        project_env(tmp_path, **pg),
                    )
                    assert sent == ["channels_postgres.core", True]
                    for ws in (a, b):
                        assert (await receive_text(ws))["text"] == "outside"
