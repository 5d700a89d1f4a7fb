"""The lifespan shutdown waits for running consumers before closing layers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from achannels import _lifespan
from achannels._lifespan import RunningConsumers
from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.layers import InMemoryChannelLayer, channel_layers
from achannels.routing import ProtocolTypeRouter
from achannels.testing import ApplicationCommunicator, WebsocketCommunicator


class RecordingLayer(InMemoryChannelLayer):
    def __init__(self, events: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = events

    async def close(self) -> None:
        self.events.append("layer closed")


async def test_wait_idle_returns_at_once_when_nothing_runs() -> None:
    assert await RunningConsumers().wait_idle(0.01)


async def test_wait_idle_wakes_when_the_last_consumer_leaves() -> None:
    running = RunningConsumers()
    running.enter()
    running.enter()
    waiting = asyncio.ensure_future(running.wait_idle(5))
    await asyncio.sleep(0)
    running.leave()
    await asyncio.sleep(0)
    assert not waiting.done()
    running.leave()
    assert await asyncio.wait_for(waiting, 1)


async def test_wait_idle_gives_up_after_its_timeout() -> None:
    running = RunningConsumers()
    running.enter()
    assert not await running.wait_idle(0.01)
    running.leave()


async def test_lifespan_shutdown_closes_layers_after_cancelled_consumers_finish() -> (
    None
):
    events: list[str] = []
    release = asyncio.Event()
    previous = channel_layers.set("default", RecordingLayer(events))

    class Slow(AsyncWebsocketConsumer):
        async def disconnect(self, code: int) -> None:
            events.append(f"disconnect started {code}")
            await release.wait()
            events.append("disconnect done")

    try:
        client = WebsocketCommunicator(Slow.as_asgi(), "/")
        assert (await client.connect())[0]
        # What hypercorn does at the end of its grace period: cancel the app.
        client.future.cancel()
        await asyncio.sleep(0)
        lifespan = ApplicationCommunicator(ProtocolTypeRouter({}), {"type": "lifespan"})
        await lifespan.send_input({"type": "lifespan.startup"})
        assert await lifespan.receive_output() == {"type": "lifespan.startup.complete"}
        await lifespan.send_input({"type": "lifespan.shutdown"})
        assert await lifespan.receive_nothing(0.05)
        assert "layer closed" not in events
        release.set()
        assert await lifespan.receive_output() == {"type": "lifespan.shutdown.complete"}
        assert events == ["disconnect started 1001", "disconnect done", "layer closed"]
    finally:
        if previous is None:
            channel_layers.backends.pop("default", None)
        else:
            channel_layers.set("default", previous)


async def test_lifespan_shutdown_stops_waiting_after_the_drain_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_lifespan, "SHUTDOWN_DRAIN_TIMEOUT", 0.05)
    client = WebsocketCommunicator(AsyncWebsocketConsumer.as_asgi(), "/")
    assert (await client.connect())[0]
    lifespan = ApplicationCommunicator(ProtocolTypeRouter({}), {"type": "lifespan"})
    await lifespan.send_input({"type": "lifespan.shutdown"})
    assert await lifespan.receive_output() == {"type": "lifespan.shutdown.complete"}
    assert "1 consumer(s) still running" in caplog.text
    await client.disconnect()
