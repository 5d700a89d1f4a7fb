"""``manage.py runworker`` with the app listed as ``"channels"`` and the layer
named by channels_redis's ``BACKEND`` string: a consumer served by uvicorn
hands a task to the worker process, which answers its group."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.servers import REPO_ROOT
from websockets.asyncio.client import connect

from tests.support.redis import require_redis, unique_prefix
from tests.support.thirdparty import project_env, serve_project

TIMEOUT = 10.0


@contextmanager
def runworker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py runworker tasks`` for the block; killed if it lingers."""
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            [sys.executable, "-W", "error", "-m", "django", "runworker", "tasks"],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(TIMEOUT)


async def test_runworker_relays_a_task_to_the_room_through_redis(
    tmp_path: Path,
) -> None:
    redis = {
        "THIRDPARTY_REDIS_URL": require_redis(),
        "THIRDPARTY_REDIS_PREFIX": unique_prefix(),
    }
    log = tmp_path / "worker.log"
    with (
        serve_project(tmp_path, **redis) as server,
        runworker(project_env(tmp_path, **redis), log) as worker,
    ):
        async with connect(
            f"{server.ws_url}/ws/room/worked/", open_timeout=TIMEOUT
        ) as ws:
            # The task waits in Redis until the worker is up.
            await ws.send(json.dumps({"text": "hi", "via_worker": True}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert reply == {"text": "worker: hi", "layer": "RedisChannelLayer"}
        worker.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(worker.wait, TIMEOUT)
    output = log.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output, output
