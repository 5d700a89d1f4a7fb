"""One consumer instance as the application of several connections, bare
and wrapped in middleware: every connection starts fresh."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.middleware import BaseMiddleware  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402


class Echo(AsyncWebsocketConsumer):
    groups = ["room"]

    async def connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data.upper())

    async def chat_message(self, event):
        await self.send(event["text"])


async def main(t: Transcript) -> None:
    layer = get_channel_layer()
    instance = Echo()
    for label, app in [("bare", instance), ("middleware", BaseMiddleware(instance))]:
        for number in range(3):
            step = f"{label} {number}"
            communicator = WebsocketCommunicator(app, "/ws/")
            await t.outcome(f"{step} connect", communicator.connect(timeout=2))
            await communicator.send_to(f"hi {number}")
            await t.outcome(f"{step} echo", communicator.receive_from(timeout=2))
            t.equal(f"{step} members", len(layer.groups.get("room", {})))
            await layer.group_send("room", {"type": "chat.message", "text": step})
            await t.outcome(f"{step} group", communicator.receive_from(timeout=2))
            await t.outcome(f"{step} disconnect", communicator.disconnect(timeout=2))
            t.equal(f"{step} members after", len(layer.groups.get("room", {})))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
