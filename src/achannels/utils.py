"""Helpers Channels 4.3 has in ``channels.utils``, for code that imports them.

achannels' consumers do not use ``await_many_dispatch`` (their dispatch loop
lives in ``_dispatch.py``); it is here, with the same behaviour, for code
written against Channels that calls it directly.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

__all__ = ["await_many_dispatch", "name_that_thing"]


def name_that_thing(thing: Any) -> str:
    """Return a readable dotted name for ``thing``: ``module.name`` for a
    class or function, a bound method's owner for a method, the class's
    name for an instance, else its ``repr``."""
    if hasattr(thing, "__name__"):
        if not isinstance(thing, (type, types.FunctionType, types.MethodType)):
            return name_that_thing(type(thing))
        owner = getattr(thing, "__self__", None)
        if isinstance(owner, type):  # a classmethod: name its class
            return f"{owner.__module__}.{owner.__name__}"
        if hasattr(thing, "__module__"):
            return f"{thing.__module__}.{thing.__name__}"
    if hasattr(thing, "__class__"):
        return name_that_thing(thing.__class__)
    return repr(thing)


async def await_many_dispatch(
    consumer_callables: Sequence[Callable[[], Awaitable[Any]]],
    dispatch: Callable[[Any], Awaitable[Any]],
) -> None:
    """Await every callable's result and ``await dispatch(result)`` as each
    arrives, calling that callable again for the next one; runs until
    ``dispatch`` or a callable raises (that error propagates), and cancels
    and awaits the pending calls on the way out."""
    tasks = [asyncio.ensure_future(source()) for source in consumer_callables]
    try:
        while True:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for index, task in enumerate(tasks):
                if task.done():
                    result = task.result()
                    await dispatch(result)
                    tasks[index] = asyncio.ensure_future(consumer_callables[index]())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
