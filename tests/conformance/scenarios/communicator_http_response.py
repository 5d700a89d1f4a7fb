"""HttpCommunicator.get_response() sends the request and reads the response,
and nothing more: a consumer with only an ``http_request`` handler keeps
running (it is not sent ``http.disconnect``)."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()
from channels.consumer import AsyncConsumer  # noqa: E402
from channels.generic.http import AsyncHttpConsumer  # noqa: E402
from channels.testing import HttpCommunicator  # noqa: E402


class RequestOnly(AsyncConsumer):
    async def http_request(self, message):
        await self.send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await self.send({"type": "http.response.body", "body": b"made"})


class Hello(AsyncHttpConsumer):
    async def handle(self, body):
        await self.send_response(200, b"hello " + body, headers=[(b"x-test", b"1")])


async def main(t: Transcript) -> None:
    communicator = HttpCommunicator(RequestOnly.as_asgi(), "GET", "/only/")
    await t.outcome("get_response", communicator.get_response())
    # Still running, so waiting for more output times out (an app that got
    # http.disconnect and raised "No handler" would raise that here).
    await t.outcome("receive_output after", communicator.receive_output(0.2))

    communicator = HttpCommunicator(Hello.as_asgi(), "POST", "/hi/", body=b"you")
    await t.outcome("AsyncHttpConsumer response", communicator.get_response())
    await t.outcome("wait after", communicator.wait(0.5))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
