"""Run calls from ``async_to_sync`` throwaway loops on one lasting loop.

``async_to_sync`` called from a plain thread (a management command, a Celery
task, a thread pool) makes a new event loop for every call and closes it
after. Connections cannot move between loops, so each such call would open
and close its own. Instead the layer hands these calls to one background
loop it owns, whose connections (and pub/sub subscriptions) live on between
calls. Calls on any other loop -- the server's, ``asyncio.run``'s -- run
where they are.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync

__all__ = ["bridged", "on_throwaway_loop", "run_bridged"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")

_SHUTDOWN_TIMEOUT = 5.0


# asgiref registers each loop it creates for one async_to_sync call in this
# class-level dict (mutated in place, never replaced).
_THROWAWAY_LOOPS: dict[Any, Any] = getattr(AsyncToSync, "loop_thread_executors", {})


def on_throwaway_loop() -> bool:
    """Return whether the running loop was made for one ``async_to_sync``
    call and will be closed right after it."""
    return asyncio.get_running_loop() in _THROWAWAY_LOOPS


class _Bridge:
    """A daemon thread running an event loop, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Layers that ran calls here; closed on this loop at interpreter exit.
        self._layers: weakref.WeakSet[Any] = weakref.WeakSet()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="achannels-redis-bridge", daemon=True
                )
                thread.start()
                self._loop = loop
                atexit.register(self._shutdown, loop, thread)
            return self._loop

    async def call(self, layer: Any, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` (of ``layer``) on the bridge loop; return its result."""
        self._layers.add(layer)
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def _shutdown(
        self, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        async def close_all() -> None:
            for layer in list(self._layers):
                await layer.close()

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(
                _SHUTDOWN_TIMEOUT
            )
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_SHUTDOWN_TIMEOUT)
            if not thread.is_alive():
                loop.close()


_bridge = _Bridge()


async def run_bridged(layer: Any, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` (a call on ``layer``) on the bridge loop."""
    return await _bridge.call(layer, coroutine)


def bridged(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Make a layer method run on the bridge loop when called on an
    ``async_to_sync`` throwaway loop, and in place otherwise."""

    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if asyncio.get_running_loop() in _THROWAWAY_LOOPS:
            return await _bridge.call(self, method(self, *args, **kwargs))
        return await method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper
