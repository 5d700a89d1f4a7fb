"""The dispatch loop: feeds a consumer its messages one at a time, in order.

A consumer listens to the client (the ASGI ``receive``) and, when it has a
channel layer, to its own layer channel. Each source gets a pump that awaits
it and hands the message to ``dispatch`` when it has the turn, so:

- handlers never overlap (the turn), and each source's messages keep their
  order (one pump per source, turns taken first come, first served);
- a client message costs no extra task hop: its pump awaits ``receive`` and
  dispatches in the same task;
- the first pump to end (``StopConsumer`` or an error) ends the loop, and the
  other pump is cancelled and awaited before the loop returns.

With a single source there is nothing to interleave, so no task is created.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from ._types import Message

__all__ = ["Turn", "dispatch_in_order"]

Source = Callable[[], Awaitable[Message]]
Dispatch = Callable[[Message], Awaitable[None]]


class Turn:
    """First-come, first-served mutual exclusion, cheaper than
    ``asyncio.Lock`` when uncontended (the usual case for a consumer): taking
    a free turn is one attribute check, with no ``async with`` machinery."""

    __slots__ = ("_busy", "_waiting")

    def __init__(self) -> None:
        self._busy = False
        # Invariant: a waiter exists only while the turn is busy; release
        # hands the turn straight to the next waiter, so nobody can overtake.
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        """Wait for the turn and take it."""
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed the turn as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    def give_back(self) -> None:
        """Release the turn to the longest waiter, or free it."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False


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

    turn = Turn()

    async def pump(source: Source) -> None:
        while True:
            message = await source()
            await turn.take()
            try:
                await dispatch(message)
            finally:
                turn.give_back()

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
