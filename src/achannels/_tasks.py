"""Owned tasks: every task has an owner that cancels and awaits it.

A small stand-in for an AnyIO task group, shaped for the loops that need one
(the dispatch loop's pumps, the ``@concurrent`` handler pool, the worker's
listeners): the owner starts tasks with ``spawn``, hears of the first failure
(a callback, or ``wait()`` raising it), and ``aclose()`` cancels and awaits
whatever still runs. Unlike ``asyncio.TaskGroup`` it needs no ``async with``
around the owner's own work and raises the failure itself, not an
``ExceptionGroup``, as the code around it (and Channels) expects.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["OwnedTasks"]


class OwnedTasks:
    """Tasks started by one owner; the first one to fail wins.

    ``on_failure`` is called, once, with the first exception a task raises
    (a cancelled task is no failure); ``failure`` keeps it.
    """

    __slots__ = ("_on_failure", "_tasks", "failure")

    def __init__(
        self, on_failure: Callable[[BaseException], object] | None = None
    ) -> None:
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(
        self,
        coroutine: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        """Run ``coroutine`` in a task owned here (in ``context``, when given:
        a copy of the current one by default)."""
        if context is None:
            task = asyncio.ensure_future(coroutine)
        else:
            # context= is Python 3.11's; callers pass one from 3.11 on only.
            loop = asyncio.get_running_loop()
            task = loop.create_task(coroutine, context=context)  # type: ignore[call-arg,unused-ignore]
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        # Retrieved here, so asyncio never logs it as "never retrieved".
        failure = task.exception()
        if failure is None or self.failure is not None:
            return
        self.failure = failure
        if self._on_failure is not None:
            self._on_failure(failure)

    async def wait(self) -> None:
        """Wait until every task has ended; raise the first failure as soon
        as there is one (the other tasks keep running: ``aclose()`` them)."""
        while self._tasks and self.failure is None:
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_EXCEPTION)
        if self.failure is not None:
            raise self.failure

    async def aclose(self) -> None:
        """Cancel every task still running and wait until all have ended."""
        tasks = self._tasks
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.wait(set(tasks))
