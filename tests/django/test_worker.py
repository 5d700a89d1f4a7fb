"""``manage.py runworker`` and ``achannels worker`` handle messages sent on a
Redis channel layer from another process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from achannels.layers.redis import RedisChannelLayer
from tests.support.django_project import PROJECT_DIR, manage_command, project_env
from tests.support.redis import require_redis, unique_prefix

DEADLINE = 30.0

WORKER_APP = '''
"""A worker application without Django, for ``achannels worker``."""

import os
import sys

from achannels.consumer import AsyncConsumer
from achannels.layers import channel_layers
from achannels.routing import ChannelNameRouter

channel_layers.configure(
    {
        "default": {
            "BACKEND": "achannels.layers.redis.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ["WORKER_REDIS_URL"]],
                "prefix": os.environ["WORKER_PREFIX"],
            },
        }
    }
)


class Tasks(AsyncConsumer):
    async def task_echo(self, message):
        await self.channel_layer.send(
            message["reply_to"],
            {
                "type": "task.done",
                "text": message["text"],
                "pid": os.getpid(),
                "django_imported": "django" in sys.modules,
            },
        )


application = ChannelNameRouter({"tasks": Tasks.as_asgi()})
'''


@contextmanager
def running(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(DEADLINE)


async def send_and_await_reply(
    url: str, prefix: str, channel: str, text: str
) -> dict[str, Any]:
    layer = RedisChannelLayer(hosts=[url], prefix=prefix)
    reply_to = f"replies-{uuid.uuid4().hex}"
    try:
        await layer.send(
            channel, {"type": "task.echo", "text": text, "reply_to": reply_to}
        )
        return await asyncio.wait_for(layer.receive(reply_to), DEADLINE)
    finally:
        await layer.close()


@pytest.mark.parametrize(
    "command",
    [
        manage_command("runworker", "testproject-tasks"),
        [
            str(Path(sys.executable).with_name("achannels")),
            "worker",
            "testproject.asgi:application",
            "testproject-tasks",
        ],
    ],
    ids=["manage.py runworker", "achannels worker with DJANGO_SETTINGS_MODULE"],
)
async def test_worker_runs_channel_name_router_consumer_for_layer_message(
    tmp_path: Path, command: list[str]
) -> None:
    url, prefix = require_redis(), unique_prefix()
    env = project_env(
        tmp_path, TESTPROJECT_REDIS_URL=url, TESTPROJECT_REDIS_PREFIX=prefix
    )
    log = tmp_path / "worker.log"
    with running(command, PROJECT_DIR, env, log) as worker:
        reply = await send_and_await_reply(url, prefix, "testproject-tasks", "hi")
        assert reply == {"type": "task.done", "text": "hi", "pid": worker.pid}
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, DEADLINE) == 0, log.read_text()
    if "runworker" in command:
        # Once: the log line Channels writes, or the banner where no log shows.
        assert log.read_text().count("Running worker for channels") == 1


async def test_achannels_worker_script_handles_layer_message_without_django(
    tmp_path: Path,
) -> None:
    url, prefix = require_redis(), unique_prefix()
    (tmp_path / "worker_app.py").write_text(textwrap.dedent(WORKER_APP))
    script = Path(sys.executable).with_name("achannels")
    env = {
        "PATH": str(script.parent) + ":/usr/bin:/bin",
        "WORKER_REDIS_URL": url,
        "WORKER_PREFIX": prefix,
    }
    log = tmp_path / "worker.log"
    command = [str(script), "worker", "worker_app:application", "tasks"]
    with running(command, tmp_path, env, log) as worker:
        reply = await send_and_await_reply(url, prefix, "tasks", "no django here")
        assert reply == {
            "type": "task.done",
            "text": "no django here",
            "pid": worker.pid,
            "django_imported": False,
        }
        worker.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(worker.wait, DEADLINE) == 0, log.read_text()
    assert "Listening on channels tasks" in log.read_text()


def test_achannels_worker_needs_app_and_channel() -> None:
    script = Path(sys.executable).with_name("achannels")
    result = subprocess.run(
        [str(script), "worker", "worker_app:application"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert "CHANNEL" in result.stderr


def test_achannels_worker_help_names_the_layer_option() -> None:
    script = Path(sys.executable).with_name("achannels")
    result = subprocess.run(
        [str(script), "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0
    assert "--layer" in result.stdout
