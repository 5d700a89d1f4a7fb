"""Opt-in concurrent handlers: the escape hatch from strict in-order dispatch.

Channels runs one handler at a time per connection, so one slow handler (an
HTTP call, a slow query) holds back every later frame and group message of
that connection. In-order stays the default here; a handler decorated with
``@concurrent`` instead runs in its own task beside the dispatch loop, at most
``max_concurrent_handlers`` at a time per consumer (the loop waits for a slot,
which is the backpressure), and every such task is cancelled when the
consumer ends. The first error one of them raises ends the consumer as if
the in-order loop had raised it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._types import Message

__all__ = ["CONCURRENT_MARK", "HandlerPool", "concurrent"]

CONCURRENT_MARK = "_achannels_concurrent"

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def concurrent(handler: Handler) -> Handler:
    """Mark an async consumer handler to run concurrently with later messages.

    Use it for handlers whose order does not matter and that may be slow;
    everything else keeps running one message at a time, in order.
    """
    checked: Any = handler  # keep `handler`'s type: the check below narrows it
    if not inspect.iscoroutinefunction(checked):
        raise TypeError(
            f"@concurrent needs an async handler; {handler.__qualname__} is not a "
            "coroutine function (sync consumers run handlers in order in their thread)"
        )
    setattr(handler, CONCURRENT_MARK, True)
    return handler


class HandlerPool:
    """The concurrent handler tasks of one consumer."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent_handlers must be at least 1, got {limit}")
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: asyncio.Future[Message] | None = None

    def _failure_future(self) -> asyncio.Future[Message]:
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure

    async def start(
        self, handler: Callable[[Message], Awaitable[None]], message: Message
    ) -> None:
        """Start ``handler(message)`` in a task once a slot is free."""
        await self._slots.acquire()
        task = asyncio.ensure_future(self._run(handler, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, handler: Callable[[Message], Awaitable[None]], message: Message
    ) -> None:
        try:
            await handler(message)
        except Exception as exc:  # StopConsumer included: it ends the consumer
            failure = self._failure_future()
            if not failure.done():
                failure.set_exception(exc)
        finally:
            self._slots.release()

    async def first_failure(self) -> Message:
        """Wait until a handler fails, then raise its error. Used as one more
        message source of the dispatch loop, so a failure ends the loop."""
        return await self._failure_future()

    async def aclose(self) -> None:
        """Cancel every running handler and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._failure is not None and not self._failure.done():
            self._failure.cancel()
