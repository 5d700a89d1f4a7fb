"""Where Channels asserts on user input, code catching AssertionError still
catches what achannels raises (ours may be a subclass with a clearer
message)."""

import asyncio

from _transcript import Transcript, configure_django

configure_django()

from channels.generic.http import AsyncHttpConsumer  # noqa: E402
from channels.layers import InMemoryChannelLayer  # noqa: E402
from channels.sessions import CookieMiddleware  # noqa: E402
from channels.testing import HttpCommunicator  # noqa: E402


class TextBody(AsyncHttpConsumer):
    async def handle(self, body):
        await self.send_headers(status=200)
        await self.send_body("text, not bytes")


def raised_assertion(function, *args, **kwargs) -> bool | str:
    try:
        function(*args, **kwargs)
    except AssertionError:
        return True
    except Exception as exc:  # recorded: a mismatch to report
        return type(exc).__name__
    return False


async def assertion_from(awaitable) -> bool | str:
    try:
        await awaitable
    except AssertionError:
        return True
    except Exception as exc:
        return type(exc).__name__
    return False


async def main(t: Transcript) -> None:
    message = {"type": "http.response.start", "headers": []}
    for samesite in ["lax", "Strict", "none", "bogus", ""]:
        t.equal(
            f"samesite {samesite!r}",
            raised_assertion(
                CookieMiddleware.set_cookie, dict(message), "k", "v", samesite=samesite
            ),
        )
    layer = InMemoryChannelLayer()
    t.equal("send a non-dict", await assertion_from(layer.send("a", ["x"])))
    t.equal(
        "send __asgi_channel__",
        await assertion_from(layer.send("a", {"type": "x", "__asgi_channel__": "b"})),
    )
    t.equal("group_send a non-dict", await assertion_from(layer.group_send("g", "x")))
    t.equal("valid_channel_names []", raised_assertion(layer.valid_channel_names, []))
    t.equal(
        "valid_channel_names str", raised_assertion(layer.valid_channel_names, "abc")
    )
    communicator = HttpCommunicator(TextBody.as_asgi(), "GET", "/")
    t.equal("send_body text", await assertion_from(communicator.get_response()))


transcript = Transcript()
asyncio.run(main(transcript))
transcript.dump()
