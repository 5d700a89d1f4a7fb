"""When a consumer starts receiving from its channel layer, relative to its
connect handler and its group joins, as a third-party layer sees it."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import InMemoryChannelLayer, channel_layers  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402

events = []


class RecordingLayer(InMemoryChannelLayer):
    async def receive(self, channel):
        events.append("layer.receive")
        return await super().receive(channel)

    async def group_add(self, group, channel):
        events.append(f"layer.group_add {group}")
        await super().group_add(group, channel)


class InRoom(AsyncWebsocketConsumer):
    groups = ["room"]

    async def connect(self):
        events.append("consumer.connect")
        await self.accept()


class Quiet(AsyncWebsocketConsumer):
    async def connect(self):
        events.append("consumer.connect")
        await self.accept()


async def main(t: Transcript) -> None:
    channel_layers.set("default", RecordingLayer())
    for consumer in (InRoom, Quiet):
        events.clear()
        communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/")
        await t.outcome(f"{consumer.__name__} connect", communicator.connect())
        await communicator.disconnect()
        # Ordered up to the first receive, which the consumer keeps waiting in.
        t.equal(f"{consumer.__name__} events", list(dict.fromkeys(events)))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
