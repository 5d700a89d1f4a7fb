"""channels_redis's asserts on user input (receiving on another process's
``!`` channel, a message that is not a dict): code catching AssertionError
still catches what achannels' Redis layers raise."""

import asyncio
import uuid

from _transcript import Transcript, redis_url
from channels_redis.core import RedisChannelLayer


async def assertion_from(awaitable) -> bool | str:
    try:
        await awaitable
    except AssertionError:
        return True
    except Exception as exc:  # recorded: a mismatch to report
        return type(exc).__name__
    return False


async def main(t: Transcript, url: str) -> None:
    layer = RedisChannelLayer(hosts=[url], prefix=f"conf{uuid.uuid4().hex[:8]}")
    try:
        own = await layer.new_channel()
        await layer.send(own, {"type": "mine"})
        await t.outcome("receive own", layer.receive(own))
        foreign = "specific.someoneelse!abc"
        t.equal("receive foreign", await assertion_from(layer.receive(foreign)))
        t.equal("send a non-dict", await assertion_from(layer.send("a", ["x"])))
        t.equal(
            "send __asgi_channel__",
            await assertion_from(layer.send("a", {"type": "x", "__asgi_channel__": 1})),
        )
    finally:
        await layer.flush()


transcript = Transcript()
url = redis_url()
transcript.equal("redis", url is not None)
if url:
    asyncio.run(main(transcript, url))
transcript.dump()
