"""The worker feeds named channels to one application instance each (no Django)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest

from achannels.consumer import AsyncConsumer
from achannels.layers import InMemoryChannelLayer
from achannels.routing import ChannelNameRouter
from achannels.worker import Worker

DEADLINE = 5.0


class Recorder(AsyncConsumer):
    """Replies on the message's ``reply_to`` channel with what it saw."""

    instances = 0

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        super().__init__()
        # The test's layer, passed in rather than configured process-wide.
        self.replies = layer
        Recorder.instances += 1
        self.instance = Recorder.instances
        self.seen = 0

    async def task_record(self, message: dict[str, Any]) -> None:
        self.seen += 1
        await self.replies.send(
            message["reply_to"],
            {
                "type": "task.recorded",
                "n": message["n"],
                "instance": self.instance,
                "seen": self.seen,
                "scope": dict(self.scope),
            },
        )

    async def task_fail(self, message: dict[str, Any]) -> None:
        raise RuntimeError("handler failed on purpose")

    async def task_send_to_client(self, message: dict[str, Any]) -> None:
        await self.send({"type": "nobody.listens"})


@pytest.fixture
def layer() -> InMemoryChannelLayer:
    return InMemoryChannelLayer()


async def run_worker(worker: Worker) -> asyncio.Task[None]:
    return asyncio.ensure_future(worker.handle())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEADLINE)


async def reply(layer: InMemoryChannelLayer, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), DEADLINE)


async def test_one_instance_per_channel_gets_messages_in_order(
    layer: InMemoryChannelLayer,
) -> None:
    app = ChannelNameRouter(
        {
            "thumbnails": Recorder.as_asgi(layer=layer),
            "emails": Recorder.as_asgi(layer=layer),
        }
    )
    task = await run_worker(Worker(app, ["thumbnails", "emails"], layer))
    try:
        for n in range(5):
            for channel in ("thumbnails", "emails"):
                await layer.send(
                    channel, {"type": "task.record", "n": n, "reply_to": "out"}
                )
        replies = [await reply(layer, "out") for _ in range(10)]
    finally:
        await stop(task)
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for message in replies:
        by_channel.setdefault(message["scope"]["channel"], []).append(message)
    assert sorted(by_channel) == ["emails", "thumbnails"]
    for channel, messages in by_channel.items():
        assert [m["n"] for m in messages] == list(range(5))
        assert [m["seen"] for m in messages] == list(range(1, 6))
        assert len({m["instance"] for m in messages}) == 1
        assert messages[0]["scope"] == {"type": "channel", "channel": channel}
    assert (
        by_channel["emails"][0]["instance"] != by_channel["thumbnails"][0]["instance"]
    )


async def test_failed_instance_is_replaced_by_next_message(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    task = await run_worker(Worker(Recorder.as_asgi(layer=layer), ["jobs"], layer))
    try:
        await layer.send("jobs", {"type": "task.record", "n": 1, "reply_to": "out"})
        first = await reply(layer, "out")
        with caplog.at_level(logging.ERROR, logger="achannels.worker"):
            await layer.send("jobs", {"type": "task.fail"})
            await layer.send("jobs", {"type": "task.record", "n": 2, "reply_to": "out"})
            second = await reply(layer, "out")
    finally:
        await stop(task)
    assert second["instance"] != first["instance"]
    assert second["seen"] == 1
    assert "Application instance for channel 'jobs' failed" in caplog.text
    assert "handler failed on purpose" in caplog.text


async def test_message_without_type_is_dropped_and_worker_goes_on(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    task = await run_worker(Worker(Recorder.as_asgi(layer=layer), ["jobs"], layer))
    try:
        with caplog.at_level(logging.ERROR, logger="achannels.worker"):
            await layer.send("jobs", {"text": "no type here"})
            await layer.send("jobs", {"type": "task.record", "n": 7, "reply_to": "out"})
            assert (await reply(layer, "out"))["n"] == 7
    finally:
        await stop(task)
    assert "Dropped a message without a 'type'" in caplog.text


async def test_send_from_instance_raises_not_implemented(
    layer: InMemoryChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    task = await run_worker(Worker(Recorder.as_asgi(layer=layer), ["jobs"], layer))
    try:
        with caplog.at_level(logging.ERROR, logger="achannels.worker"):
            await layer.send("jobs", {"type": "task.send_to_client"})
            await layer.send("jobs", {"type": "task.record", "n": 1, "reply_to": "out"})
            await reply(layer, "out")
    finally:
        await stop(task)
    assert "NotImplementedError" in caplog.text
    assert "send replies through the channel layer" in caplog.text


async def test_cancelled_worker_leaves_no_tasks(layer: InMemoryChannelLayer) -> None:
    before = asyncio.all_tasks()
    task = await run_worker(Worker(Recorder.as_asgi(layer=layer), ["a", "b"], layer))
    await layer.send("a", {"type": "task.record", "n": 1, "reply_to": "out"})
    await reply(layer, "out")
    await stop(task)
    assert asyncio.all_tasks() == before


def test_worker_needs_a_layer_and_a_channel(layer: InMemoryChannelLayer) -> None:
    with pytest.raises(ValueError, match="Channel layer is not valid"):
        Worker(Recorder.as_asgi(layer=layer), ["jobs"], None)
    with pytest.raises(ValueError, match="at least one channel"):
        Worker(Recorder.as_asgi(layer=layer), [], layer)


@pytest.mark.parametrize(
    ("app", "error"),
    [
        ("nomodule_for_achannels_test:app", "Cannot import module"),
        ("achannels.routing:no_such_app", "has no attribute 'no_such_app'"),
        ("justaname", "APP must look like 'module:attribute'"),
    ],
)
def test_cli_worker_reports_bad_app_path(app: str, error: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "achannels.cli", "worker", app, "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert error in result.stderr


def test_cli_worker_without_layer_says_how_to_configure_one() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "achannels.cli",
            "worker",
            "achannels.worker:Worker",
            "jobs",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert "No channel layer 'default' is configured" in result.stderr
    assert "channel_layers.configure" in result.stderr
