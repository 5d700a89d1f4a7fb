"""After receive_output() timed out (which cancels the application), a later
disconnect() or wait() raises CancelledError, as asgiref's communicator does."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402


class Quiet(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()


async def main(t: Transcript) -> None:
    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/ws/")
    await t.outcome("connect", communicator.connect())
    await t.outcome("receive_output", communicator.receive_output(0.1))
    await t.outcome("disconnect", communicator.disconnect())

    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/ws/")
    await t.outcome("connect again", communicator.connect())
    await t.outcome("receive_from", communicator.receive_from(0.1))
    await t.outcome("wait", communicator.wait(0.5))

    communicator = WebsocketCommunicator(Quiet.as_asgi(), "/ws/")
    await t.outcome("connect a third", communicator.connect())
    await t.outcome("receive_nothing", communicator.receive_nothing(0.1))
    await t.outcome("disconnect after nothing", communicator.disconnect())


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
