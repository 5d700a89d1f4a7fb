"""The ASGI lifespan answer: startup checks the configured channel layers
(one warning naming an unreachable host), shutdown drains the running
consumers and then closes the channel layers.

Servers do not agree on when they run the lifespan shutdown: uvicorn closes
every connection first; hypercorn cancels its connections after the grace
period and runs the lifespan shutdown straight away, while the consumers it
cancelled are still running their ``disconnect()``. Closing the channel
layers then would pull the Redis connections out from under those handlers.
So the lifespan shutdown first waits, bounded, until no consumer is running.
"""

from __future__ import annotations

import asyncio
import logging

from ._logging import install_fallback_handler
from ._types import Receive, Scope, Send

__all__ = [
    "SHUTDOWN_DRAIN_TIMEOUT",
    "RunningConsumers",
    "answer_lifespan",
    "check_layers",
    "running_consumers",
]

# ProtocolTypeRouter answers lifespan: its logger names the warning.
logger = logging.getLogger("achannels.routing")

#: How long the lifespan shutdown waits for running consumers to finish.
SHUTDOWN_DRAIN_TIMEOUT = 10.0
#: How long the lifespan startup waits for a layer's servers to answer.
STARTUP_CHECK_TIMEOUT = 3.0


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


async def answer_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a ``lifespan`` scope that no application of the user's handles."""
    # Servers probe lifespan on startup; answering it keeps uvicorn and
    # hypercorn from logging "lifespan unsupported", and shutdown is where
    # channel layers (Redis connections) get closed.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            install_fallback_handler()
            await check_layers()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await _shut_down(send)
            return


async def check_layers() -> None:
    """Warn once per configured layer that cannot work: it cannot be built,
    or a server it needs does not answer (naming the host). Startup goes on:
    the layers reconnect by themselves once their servers are up."""
    try:
        from .layers import channel_layers

        aliases = list(channel_layers.configs)
    except Exception as exc:  # settings that cannot be read fail on first use
        logger.debug("channel layer startup check skipped: %r", exc)
        return
    for alias in aliases:
        try:
            layer = channel_layers[alias]
        except Exception as exc:
            logger.warning("Channel layer %r cannot be built: %s", alias, exc)
            continue
        check = getattr(layer, "_check_reachable", None)
        if check is None:
            continue
        try:
            problems = await asyncio.wait_for(check(), STARTUP_CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            problems = [f"its server did not answer within {STARTUP_CHECK_TIMEOUT:g}s"]
        for problem in problems:
            logger.warning(
                "Channel layer %r: %s; consumers that use it fail until it is "
                "reachable",
                alias,
                problem,
            )


async def _shut_down(send: Send) -> None:
    # Consumers the server cancelled may still be running their
    # disconnect(); the layers they use stay open until they end.
    if not await running_consumers.wait_idle(SHUTDOWN_DRAIN_TIMEOUT):
        logger.warning(
            "Closing channel layers with %d consumer(s) still running after %.0fs",
            len(running_consumers),
            SHUTDOWN_DRAIN_TIMEOUT,
        )
    try:
        from .layers import channel_layers

        await channel_layers.aclose()
    except Exception as exc:
        await send(
            {
                "type": "lifespan.shutdown.failed",
                "message": f"Closing channel layers failed: {exc!r}",
            }
        )
    else:
        await send({"type": "lifespan.shutdown.complete"})
