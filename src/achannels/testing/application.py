"""Drive one ASGI application instance from a test, message by message."""

from __future__ import annotations

import asyncio
import contextvars
from types import TracebackType

from .._types import ASGIApp, Message, Scope

__all__ = ["ApplicationCommunicator"]


class ApplicationCommunicator:
    """Run ``application`` with ``scope`` in a task and talk to it.

    Same API and defaults as ``channels.testing.ApplicationCommunicator``
    (asgiref's): ``send_input``, ``receive_output(timeout=1)``,
    ``receive_nothing(timeout=0.1, interval=0.01)``, ``wait(timeout=1)``,
    ``stop()``, and the ``future``, ``input_queue``, ``output_queue``
    attributes. The application starts on first use, in an empty
    ``contextvars`` context as under a server.

    Differences that only show when something goes wrong: a failure or the
    end of the application is noticed at once instead of after the timeout;
    output the application sent before failing is returned before its
    exception is raised; a communicator whose application was cancelled after
    a timeout stays usable (``disconnect()``/``wait()`` return quietly).
    ``async with`` cancels and awaits the application on exit, so no task
    outlives the block.
    """

    def __init__(self, application: ASGIApp, scope: Scope):
        self.application = application
        self.scope = scope
        self.input_queue: asyncio.Queue[Message] = asyncio.Queue()
        self.output_queue: asyncio.Queue[Message] = asyncio.Queue()
        self._future: asyncio.Task[None] | None = None
        # Set whenever output arrives or the application ends; receivers wait
        # on it so they wake for either, never only at their deadline.
        self._changed = asyncio.Event()

    @property
    def future(self) -> asyncio.Task[None]:
        """The task running the application (created on first access)."""
        if self._future is None:
            # A server starts each connection without the test's context vars.
            task = contextvars.Context().run(asyncio.create_task, self._run())
            task.add_done_callback(lambda _: self._changed.set())
            self._future = task
        return self._future

    async def _run(self) -> None:
        await self.application(self.scope, self.input_queue.get, self._send)

    async def _send(self, message: Message) -> None:
        self.output_queue.put_nowait(message)
        self._changed.set()

    def _raise_failure(self) -> None:
        """Raise the application's exception if it ended with one."""
        future = self.future
        if future.done() and not future.cancelled():
            future.result()

    async def _cancel(self) -> None:
        future = self.future
        if future.done():
            return
        future.cancel()
        # asyncio.wait() does not raise the task's CancelledError, so only a
        # cancellation of the caller itself propagates from here.
        await asyncio.wait({future})

    async def _wait_changed(self, deadline: float | None) -> bool:
        """Wait for output or the end of the application; False at the deadline."""
        self._changed.clear()
        if deadline is None:
            await self._changed.wait()
            return True
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self._changed.wait(), remaining)
        except asyncio.TimeoutError:
            return False
        return True

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        if timeout is None:
            return None
        return asyncio.get_running_loop().time() + timeout

    async def send_input(self, message: Message) -> None:
        """Queue ``message`` for the application's ``receive()``.

        Raises the application's exception if it already failed.
        """
        self._raise_failure()
        self.input_queue.put_nowait(message)

    async def receive_output(self, timeout: float | None = 1) -> Message:
        """Return the next message the application sent.

        Raises the application's exception when it failed, and
        ``asyncio.TimeoutError`` when nothing arrives within ``timeout``
        seconds (``None``: no limit) or the application ended without sending
        more; on a timeout the application is cancelled, as in Channels.
        """
        deadline = self._deadline(timeout)
        future = self.future
        while True:
            if not self.output_queue.empty():
                return self.output_queue.get_nowait()
            if future.done():
                self._raise_failure()
                raise asyncio.TimeoutError(
                    "The application ended without sending another message"
                )
            if not await self._wait_changed(deadline):
                break
        await self._cancel()
        self._raise_failure()
        raise asyncio.TimeoutError(
            f"The application sent nothing within {timeout} s; it was cancelled"
        )

    async def receive_nothing(
        self, timeout: float = 0.1, interval: float = 0.01
    ) -> bool:
        """Return True if the application sends nothing for ``timeout`` seconds.

        Returns False as soon as a message is waiting (it stays queued).
        ``interval`` is accepted for compatibility; waking is event driven.
        Raises the application's exception if it failed and sent nothing.
        """
        del interval
        deadline = self._deadline(timeout)
        future = self.future
        while self.output_queue.empty():
            if future.done():
                self._raise_failure()
                return True
            if not await self._wait_changed(deadline):
                return self.output_queue.empty()
        return False

    async def wait(self, timeout: float | None = 1) -> None:
        """Wait for the application to return; raise what it raised.

        On ``timeout`` the application is cancelled and
        ``asyncio.TimeoutError`` raised. An application that was cancelled
        counts as ended.
        """
        deadline = self._deadline(timeout)
        future = self.future
        while not future.done():
            if not await self._wait_changed(deadline):
                await self._cancel()
                self._raise_failure()
                raise asyncio.TimeoutError(
                    f"The application did not end within {timeout} s; it was cancelled"
                )
        self._raise_failure()

    async def _wait_ended(self, timeout: float | None) -> None:
        """Give the application up to ``timeout`` s to end; raise its failure."""
        deadline = self._deadline(timeout)
        future = self.future
        while not future.done():
            if not await self._wait_changed(deadline):
                return
        self._raise_failure()

    def stop(self, exceptions: bool = True) -> None:
        """Cancel the application if running, else raise its exception
        (when ``exceptions``). Does not wait; prefer ``wait()`` or
        ``async with``, which do."""
        future = self._future
        if future is None:
            return
        if not future.done():
            future.cancel()
        elif exceptions and not future.cancelled():
            future.result()

    async def __aenter__(self) -> ApplicationCommunicator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._future is not None:
            await self._cancel()

    def __del__(self) -> None:
        if not hasattr(self, "_future"):
            return  # a subclass's __init__ raised before ours ran
        try:
            self.stop(exceptions=False)
        except RuntimeError:
            # The event loop is already closed; nothing left to cancel.
            pass
