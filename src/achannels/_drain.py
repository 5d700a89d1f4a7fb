"""Which consumers are still running, so shutdown can wait for them.

Servers do not agree on when they run the lifespan shutdown: uvicorn closes
every connection first; hypercorn cancels its connections after the grace
period and runs the lifespan shutdown straight away, while the consumers it
cancelled are still running their ``disconnect()``. Closing the channel
layers then would pull the Redis connections out from under those handlers.
So the lifespan shutdown first waits, bounded, until no consumer is running.
"""

from __future__ import annotations

import asyncio

__all__ = ["RunningConsumers", "running_consumers"]


class RunningConsumers:
    """A count of consumers inside ``__call__``, and a way to wait for none."""

    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        # Waiters are futures of whatever loop waits; created only then.
        self._idle: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return self._count

    def enter(self) -> None:
        self._count += 1

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0 and self._idle:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                loop = waiter.get_loop()
                # A waiter may belong to another thread's loop (sync callers).
                loop.call_soon_threadsafe(_wake, waiter)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no consumer runs; return False if ``timeout`` passed first."""
        if self._count == 0:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            if waiter in self._idle:
                self._idle.remove(waiter)
        return True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


#: Every consumer of the process.
running_consumers = RunningConsumers()
