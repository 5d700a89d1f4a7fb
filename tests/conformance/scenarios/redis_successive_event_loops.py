"""The Redis layer used from sync code: process-local channels made and sent
to in ``async_to_sync`` calls are received, newest first, in later ones,
each call on a new event loop and closing its pools at the end (as code
driving channels_redis from sync code does); then the process exits."""

import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor, TimeoutError

from _transcript import Transcript, redis_url
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

DEADLINE = 5


def main(t: Transcript, url: str) -> bool:
    """Record the steps; return False if a receive never returned."""
    layer = RedisChannelLayer(hosts=[url], prefix=f"conf{uuid.uuid4().hex[:8]}")

    async def then_close(operation, *args):
        try:
            return await operation(*args)
        finally:
            await layer.close_pools()

    names = [async_to_sync(then_close)(layer.new_channel) for _ in range(3)]
    # Process-local channels of this one layer: one "!" prefix for all.
    t.equal("prefixes", len({name.partition("!")[0] for name in names}))
    for number, name in enumerate(names):
        message = {"type": "numbered", "number": number}
        async_to_sync(then_close)(layer.send, name, message)
    # Not a with block: its exit would wait for a receive that never returns.
    pool = ThreadPoolExecutor(1)
    for name in reversed(names):
        step = f"receive {names.index(name)}"
        receive = pool.submit(async_to_sync(then_close), layer.receive, name)
        try:
            t.equal(step, receive.result(DEADLINE))
        except TimeoutError:
            t.equal(step, f"no message within {DEADLINE} s")
            return False
    pool.shutdown()
    async_to_sync(then_close)(layer.flush)
    return True


transcript = Transcript()
url = redis_url()
transcript.equal("redis", url is not None)
finished = main(transcript, url) if url else True
transcript.dump()
if not finished:
    # A receive is stuck on an event loop that never ends: exiting normally
    # would hang on its thread. The transcript already shows the failure.
    sys.stdout.flush()
    os._exit(0)
