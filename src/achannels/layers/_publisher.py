"""A channel layer for synchronous code: ``publisher.group_send(...)``.

Django views, signal handlers, management commands and Celery tasks are
synchronous. In Channels they call ``async_to_sync(layer.group_send)``,
which makes an event loop per call (channels_redis then makes connections
per call, and "Event loop is closed" follows them around). Here::

    from achannels.layers import publisher

    publisher.group_send("room.lobby", {"type": "chat.message", "text": "hi"})

How it runs:

- One daemon thread runs one event loop for every publisher of the process,
  started on first use (after a ``fork``, again in the child) and stopped at
  interpreter exit, after closing the connections it opened there (within
  :data:`EXIT_TIMEOUT`), so the process exits promptly.
- Each call runs the layer's own async method on that loop and blocks the
  calling thread until it is done: the loop keeps the layer's connections
  between calls, and any number of threads may call at once.
- Bounded: at most ``max_in_flight`` calls run at once; a caller waits for a
  slot and for its call together at most ``timeout`` seconds, then gets
  :class:`TimeoutError` (the call is cancelled). Nothing queues without
  limit.
- The in-memory layer lives in the loop of the server that runs the
  consumers (it is not thread-safe), so calls on it run there, where its
  consumers wait; before any consumer ran, on the publisher's loop.
- Only the layer's public async API is used, so any backend works.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .. import DEFAULT_CHANNEL_LAYER
from .._types import Message
from ._manager import get_channel_layer

__all__ = ["EXIT_TIMEOUT", "Publisher", "publisher"]

logger = logging.getLogger("achannels.layers")

T = TypeVar("T")

#: Seconds the interpreter's exit may spend closing the publisher's loop.
EXIT_TIMEOUT = 5.0
#: Default seconds a call may take, waiting for a slot included.
DEFAULT_TIMEOUT = 10.0
#: Default cap on calls running at once, over every thread of the process.
DEFAULT_MAX_IN_FLIGHT = 64


class _LoopThread:
    """The publishers' event loop and its daemon thread, started on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # Layers used from this loop: their connections here close at exit.
        self._layers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._atexit = False

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                # Forked: the parent's thread does not exist here.
                self._loop, self._thread = None, None
                self._layers = weakref.WeakSet()
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="achannels-publisher", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                if not self._atexit:
                    atexit.register(self.stop)
                    self._atexit = True
            return self._loop

    def used(self, layer: Any) -> None:
        self._layers.add(layer)

    def stop(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Close the layers' connections on the loop, stop it, join the
        thread; each step bounded by ``timeout`` in all."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop, self._thread = None, None
            layers, self._layers = list(self._layers), weakref.WeakSet()
        if loop is None or thread is None or self._pid != os.getpid():
            return

        async def close_all() -> None:
            for layer in layers:
                try:
                    await layer.close()
                except Exception:
                    logger.exception("Closing %r on the publisher's loop", layer)

        try:
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            logger.warning("Publisher: closing layers took over %ss", timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()


_loop_thread = _LoopThread()


class Publisher:
    """Send to channels and groups from synchronous code, in any thread.

    ``alias`` names the layer in ``CHANNEL_LAYERS`` (looked up on each call,
    so configuring later is fine), or pass ``layer`` itself. ``timeout`` is
    the default bound of each call in seconds; ``max_in_flight`` caps the
    calls this publisher runs at once.

    Every method blocks until the layer's async method of the same name has
    returned, and raises what it raises, plus :class:`TimeoutError` past the
    timeout, :class:`RuntimeError` when no layer is configured or when
    called from a thread that runs an event loop (there, ``await`` the
    layer's method instead).
    """

    def __init__(
        self,
        alias: str = DEFAULT_CHANNEL_LAYER,
        *,
        layer: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.alias = alias
        self.timeout = timeout
        self._layer = layer
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)

    def __repr__(self) -> str:
        target = repr(self._layer) if self._layer is not None else repr(self.alias)
        return f"<Publisher for {target}>"

    def using(self, alias: str) -> Publisher:
        """Return a publisher for the layer of another alias."""
        return Publisher(alias, timeout=self.timeout, max_in_flight=self.max_in_flight)

    @property
    def layer(self) -> Any:
        """The channel layer this publisher sends through."""
        layer = (
            self._layer if self._layer is not None else get_channel_layer(self.alias)
        )
        if layer is None:
            raise RuntimeError(
                f"No channel layer is configured for alias {self.alias!r}: set "
                "CHANNEL_LAYERS (or call channel_layers.configure()) first"
            )
        return layer

    # The layer API, synchronously.

    def send(
        self, channel: str, message: Message, *, timeout: float | None = None
    ) -> None:
        """Send ``message`` to ``channel`` (``layer.send``)."""
        self._call(lambda layer: layer.send(channel, message), timeout)

    def group_send(
        self, group: str, message: Message, *, timeout: float | None = None
    ) -> None:
        """Send ``message`` to every channel in ``group`` (``layer.group_send``)."""
        self._call(lambda layer: layer.group_send(group, message), timeout)

    def group_add(
        self, group: str, channel: str, *, timeout: float | None = None
    ) -> None:
        """Add ``channel`` to ``group`` (``layer.group_add``)."""
        self._call(lambda layer: layer.group_add(group, channel), timeout)

    def group_discard(
        self, group: str, channel: str, *, timeout: float | None = None
    ) -> None:
        """Remove ``channel`` from ``group`` (``layer.group_discard``)."""
        self._call(lambda layer: layer.group_discard(group, channel), timeout)

    def group_size(self, group: str, *, timeout: float | None = None) -> int:
        """Return how many channels are in ``group`` (``layer.group_size``)."""
        size: int = self._call(lambda layer: layer.group_size(group), timeout)
        return size

    def presence_list(
        self, room: str, *, timeout: float | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Return who is in ``room`` (``layer.presence_list``)."""
        listing: dict[str, list[dict[str, Any]]] = self._call(
            lambda layer: layer.presence_list(room), timeout
        )
        return listing

    def _call(
        self,
        make: Callable[[Any], Coroutine[Any, Any, T]],
        timeout: float | None,
    ) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "The publisher blocks its caller, and this thread runs an event "
                "loop: await the channel layer's method here instead"
            )
        limit = self.timeout if timeout is None else timeout
        layer = self.layer
        deadline = time.monotonic() + limit
        if not self._slots.acquire(timeout=limit):
            raise TimeoutError(
                f"The publisher already runs its {self.max_in_flight} "
                f"calls at once and none ended within {limit}s: is the layer slow?"
            )
        try:
            loop = _loop_for(layer)
            coroutine = make(layer)
            try:
                future = asyncio.run_coroutine_threadsafe(coroutine, loop)
            except BaseException:
                coroutine.close()  # the loop is gone: never leave it unawaited
                raise
            try:
                return future.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise TimeoutError(
                    f"Channel layer call did not finish within {limit}s "
                    f"({layer}); it was cancelled"
                ) from None
        finally:
            self._slots.release()


def _loop_for(layer: Any) -> asyncio.AbstractEventLoop:
    """The loop to run ``layer``'s calls on: the in-memory layer's home loop
    (where its consumers run) while that loop runs, else the publisher's."""
    home = getattr(layer, "_home_loop", None)
    if home is not None and home.is_running() and not home.is_closed():
        assert isinstance(home, asyncio.AbstractEventLoop)
        return home
    loop = _loop_thread.loop()
    _loop_thread.used(layer)
    return loop


#: The publisher of the default layer (``CHANNEL_LAYERS["default"]``).
publisher = Publisher()
