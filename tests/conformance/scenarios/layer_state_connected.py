"""The in-memory layer state tests read: a connected consumer's channel is a
key of ``layer.channels`` (even if the consumer never read
``self.channel_name``), its groups are in ``layer.groups``, and tests can
send to ``list(layer.channels)[0]``."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402


class Quiet(AsyncWebsocketConsumer):
    """Never reads self.channel_name."""

    async def connect(self):
        await self.accept()

    async def chat_message(self, event):
        await self.send(event["text"])


class InRoom(AsyncWebsocketConsumer):
    groups = ["room"]

    async def chat_message(self, event):
        await self.send(event["text"])


def shape(name: str) -> str:
    """The channel name without its random part."""
    return name.rpartition("!")[0] + "!"


def groups(layer) -> dict:
    return {group: len(members) for group, members in layer.groups.items()}


async def main(t: Transcript) -> None:
    layer = get_channel_layer()
    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/ws/")
    await t.outcome("connect", communicator.connect())
    t.equal("channels listed", len(layer.channels))
    if layer.channels:
        name = list(layer.channels)[0]  # noqa: RUF015  (what tests write)
        t.equal("name shape", shape(name))
        await layer.send(name, {"type": "chat.message", "text": "to the first"})
        await t.outcome("received", communicator.receive_from())
    await communicator.disconnect()
    t.equal("channels after disconnect", len(layer.channels))

    communicator = WebsocketCommunicator(InRoom.as_asgi(), "/ws/")
    await t.outcome("connect in room", communicator.connect())
    t.equal("groups", groups(layer))
    t.equal(
        "member is listed", list(layer.groups.get("room", ())) == list(layer.channels)
    )
    await layer.group_send("room", {"type": "chat.message", "text": "to the room"})
    await t.outcome("received from group", communicator.receive_from())
    await communicator.disconnect()
    t.equal("groups after disconnect", groups(layer))
    t.equal("channels after leaving", len(layer.channels))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
