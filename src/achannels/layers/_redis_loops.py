"""State bound to an event loop: one set of connections per loop, closed with it.

asyncio connections belong to the loop that opened them, and
``async_to_sync`` runs each call on a fresh loop. So a layer keeps its
connections (and its receive pumps) per running loop, and closes them when
that loop closes -- before the loop's ``close()`` runs -- so nothing leaks
and no connection is ever used from a loop it does not belong to.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["PerLoop"]

logger = logging.getLogger("achannels.layers.redis")

T = TypeVar("T")

# Closing a loop's connections must not hang its close() forever.
_CLOSE_TIMEOUT = 10.0


class PerLoop(Generic[T]):
    """One ``T`` per running event loop, made by ``factory`` on first use and
    closed with ``closer`` by :meth:`aclose_current` or when its loop closes."""

    def __init__(
        self, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]
    ) -> None:
        self._factory = factory
        self._closer = closer
        self._states: dict[asyncio.AbstractEventLoop, T] = {}
        self._lock = threading.Lock()
        self._hooked: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def get(self) -> T:
        """Return the running loop's state, creating it on first use.

        Raises :class:`RuntimeError` when no event loop is running.
        """
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._factory()
            with self._lock:
                self._states[loop] = state
            if loop not in self._hooked:
                self._hooked.add(loop)
                _close_with(loop, self._on_loop_close)
        return state

    def current(self) -> T | None:
        """Return the running loop's state if it has one."""
        return self._states.get(asyncio.get_running_loop())

    def others(self) -> list[T]:
        """Return the states of loops other than the running one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            return [state for key, state in self._states.items() if key is not loop]

    async def aclose_current(self) -> None:
        """Close the running loop's state; the next :meth:`get` makes a new one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None:
            await self._closer(state)

    def _on_loop_close(self, loop: asyncio.AbstractEventLoop) -> None:
        self._hooked.discard(loop)
        with self._lock:
            state = self._states.pop(loop, None)
        if state is None or loop.is_closed() or loop.is_running():
            return
        try:
            loop.run_until_complete(
                asyncio.wait_for(self._closer(state), _CLOSE_TIMEOUT)
            )
        except Exception:
            logger.exception("Closing Redis connections of a closing event loop")


def _close_with(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[asyncio.AbstractEventLoop], None],
) -> None:
    """Make ``loop.close()`` call ``callback(loop)`` first, once.

    asyncio has no close hook, so the instance's ``close`` is wrapped (as
    channels_redis does); wrappers from several layers chain.
    """
    original = loop.close

    def close(self: Any) -> None:
        loop.close = original  # type: ignore[method-assign]
        try:
            callback(loop)
        finally:
            original()

    loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
