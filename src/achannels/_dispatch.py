"""The dispatch loop: feeds a consumer its messages one at a time, in order.

A consumer listens to the client (the ASGI ``receive``) and, when it has a
channel layer, to its own layer channel. Each source gets a pump that awaits
it and hands the message to ``dispatch`` under one lock, so:

- handlers never overlap (the lock), and each source's messages keep their
  order (one pump per source, FIFO lock);
- a client message costs no extra task hop: its pump awaits ``receive`` and
  dispatches in the same task;
- the first pump to end (``StopConsumer`` or an error) ends the loop, and the
  other pump is cancelled and awaited before the loop returns.

With a single source there is nothing to interleave, so no task is created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from ._types import Message

__all__ = ["dispatch_in_order"]

Source = Callable[[], Awaitable[Message]]
Dispatch = Callable[[Message], Awaitable[None]]


async def dispatch_in_order(sources: Sequence[Source], dispatch: Dispatch) -> None:
    """Dispatch messages from ``sources`` one at a time until a handler raises.

    Never returns normally: it ends by raising what a source or ``dispatch``
    raised (``StopConsumer`` for a clean end), after cancelling every task it
    started.
    """
    if len(sources) == 1:
        receive = sources[0]
        while True:
            await dispatch(await receive())

    lock = asyncio.Lock()

    async def pump(source: Source) -> None:
        while True:
            message = await source()
            async with lock:
                await dispatch(message)

    pumps = [asyncio.ensure_future(pump(source)) for source in sources]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        # Wait for the cancelled pumps so no handler outlives its consumer.
        await asyncio.wait(pumps)
        # The first pump that ended decides the consumer's fate; reading every
        # outcome also keeps asyncio from warning about unretrieved errors.
        outcomes = [task.exception() for task in pumps if not task.cancelled()]
    raise next(exc for exc in outcomes if exc is not None)
