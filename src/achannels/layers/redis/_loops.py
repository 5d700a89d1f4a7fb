"""Which event loop owns a layer's connections.

asyncio connections belong to the loop that opened them. So a layer keeps its
connections (and its receive pumps) per running loop in a :class:`PerLoop`,
and closes them when that loop closes -- before the loop's ``close()`` runs --
so nothing leaks and no connection is ever used from a loop it does not
belong to.

``async_to_sync`` called from a plain thread (a management command, a Celery
task, a thread pool) makes a new event loop for every call and closes it
after, so each such call would open and close its own connections. Instead
the layer hands these calls (:func:`bridged`, :func:`run_bridged`) to one
background loop it owns, whose connections (and pub/sub subscriptions) live
on between calls. Calls on any other loop -- the server's, ``asyncio.run``'s
-- run where they are.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import logging
import threading
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync

__all__ = ["PerLoop", "bridged", "on_throwaway_loop", "run_bridged"]

logger = logging.getLogger("achannels.layers.redis")

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S")

# Closing a loop's connections must not hang its close() forever.
_CLOSE_TIMEOUT = 10.0
_SHUTDOWN_TIMEOUT = 5.0


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

    def get(self, loop: asyncio.AbstractEventLoop | None = None) -> T:
        """Return the running loop's state, creating it on first use; pass
        ``loop`` when the caller already has the running loop.

        Raises :class:`RuntimeError` when no event loop is running.
        """
        if loop is None:
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


# asgiref registers each loop it creates for one async_to_sync call in this
# class-level dict (mutated in place, never replaced).
_THROWAWAY_LOOPS: dict[Any, Any] = getattr(AsyncToSync, "loop_thread_executors", {})


def on_throwaway_loop(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Return whether the running loop (``loop``, when the caller has it) was
    made for one ``async_to_sync`` call and will be closed right after it."""
    return (loop or asyncio.get_running_loop()) in _THROWAWAY_LOOPS


class _Bridge:
    """A daemon thread running an event loop, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Layers that ran calls here; closed on this loop at interpreter exit.
        self._layers: weakref.WeakSet[Any] = weakref.WeakSet()
        # Calls in progress. Each has a caller blocked in an async_to_sync
        # worker thread, which Python joins at exit: cancelled then, so a
        # receive() nobody will answer cannot keep the process alive.
        self._calls: set[concurrent.futures.Future[Any]] = set()

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
                _before_threads_join(self._cancel_calls)
            return self._loop

    async def call(self, layer: Any, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` (of ``layer``) on the bridge loop; return its result."""
        self._layers.add(layer)
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        with self._lock:
            self._calls.add(future)
        future.add_done_callback(self._forget_call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def _forget_call(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._calls.discard(future)

    def _cancel_calls(self) -> None:
        with self._lock:
            calls = list(self._calls)
        for future in calls:
            future.cancel()

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


def _before_threads_join(callback: Callable[[], None]) -> None:
    """Run ``callback`` at interpreter exit before non-daemon threads (the
    ``async_to_sync`` workers among them) are joined; plain ``atexit`` runs
    after that join, too late for a worker blocked on the bridge."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # not CPython 3.9+: atexit is the best there is
        atexit.register(callback)
        return
    try:
        register(callback)
    except RuntimeError:  # the interpreter is already shutting down
        pass


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
