"""A group handler started in the Redis layers' reader, cancelled while it
is handed back to its consumer (``Resume.abandon`` in ``achannels._dispatch``).

On the Redis layers a group message for an idle consumer starts its handler
in the task that read it (the core layer's pump, the pub/sub subscription's
reader); a handler that blocks is handed to the consumer's listener as a
``Resume``. If the listener is cancelled in the same tick, before it runs
(the loop shutting down cancels every task at once), the handler must be
cancelled as it would be had the listener already taken it: its cleanup runs
to its end, awaits included, and the consumer's turn is released.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels.layers.redis import RedisChannelLayer, RedisPubSubChannelLayer
from achannels.testing import WebsocketCommunicator
from tests.support.layers import as_default
from tests.support.redis import require_redis, unique_prefix

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        sys.version_info < (3, 11), reason="handlers start in the reader from 3.11"
    ),
]

TIMEOUT = 10.0


class Stage:
    """What one test's handler reports, and what it waits for."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned_up = asyncio.Event()
        self.cancelled = False
        self.listener: asyncio.Task[Any] | None = None


stage = Stage()


class Held(AsyncWebsocketConsumer):
    """Echoes frames; a ``held.message`` holds until released, and leaves
    its group on the way out, however it ends."""

    groups = ["held"]

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await self.send(text_data=text_data)

    async def held_message(self, event: dict[str, Any]) -> None:
        # The handler's task is the consumer's listener wherever it starts.
        stage.listener = asyncio.current_task()
        stage.started.set()
        try:
            await stage.release.wait()
        except asyncio.CancelledError:
            stage.cancelled = True
            raise
        finally:
            # Cleanup that awaits: the cancellation must let it finish.
            await asyncio.sleep(0)
            assert self.channel_layer is not None
            await self.channel_layer.group_discard("held", self.channel_name)
            stage.cleaned_up.set()


@pytest.fixture(params=["redis", "redis-pubsub"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    global stage
    stage = Stage()
    kind = RedisChannelLayer if request.param == "redis" else RedisPubSubChannelLayer
    layer: Any = kind(hosts=[require_redis()], prefix=unique_prefix())
    try:
        with as_default(layer):
            yield layer
    finally:
        await layer.close()


async def test_listener_cancelled_as_a_held_handler_is_handed_back_cancels_it_cleanly(
    layer: Any,
) -> None:
    communicator = WebsocketCommunicator(Held.as_asgi(), "/")
    connected, _ = await communicator.connect()
    assert connected
    # Sent from another task, so that this one already waits when the
    # handler starts (the reader may see the message before group_send
    # returns).
    sending = asyncio.ensure_future(layer.group_send("held", {"type": "held.message"}))
    async with asyncio.timeout(TIMEOUT):
        await stage.started.wait()
    # The handler started in the reader and blocked; its Resume was just
    # handed to the listener, whose wakeup is queued after ours: cancel the
    # listener before it runs.
    listener = stage.listener
    assert listener is not None and listener is not asyncio.current_task()
    listener.cancel()
    async with asyncio.timeout(TIMEOUT):
        await sending
        await stage.cleaned_up.wait()
        await asyncio.wait({listener})
    # Cancelled at its await, and its cleanup (which awaits the layer) ran
    # to its end.
    assert stage.cancelled
    assert listener.cancelled()
    # The consumer's turn was released: the client is still served.
    await communicator.send_to(text_data="still here")
    assert await communicator.receive_from(TIMEOUT) == "still here"
    await communicator.disconnect()
