"""Drive one ASGI application instance from a test, message by message."""

from __future__ import annotations

import asyncio
import contextvars
from types import TracebackType

from asgiref.testing import ApplicationCommunicator as _AsgirefCommunicator

from .._django import connections_kept_open
from .._types import ASGIApp, Message, Scope
from ..generic._websocket_edge import FailureClose

__all__ = ["ApplicationCommunicator", "no_op"]


def no_op() -> None:
    """Do nothing (Channels' stand-in for ``close_old_connections`` while a
    communicator call runs; kept for code that imports it)."""


class ApplicationCommunicator(_AsgirefCommunicator):
    """Run ``application`` with ``scope`` in a task and talk to it.

    This is asgiref's ``ApplicationCommunicator``, as in Channels:
    ``send_input``, ``receive_output(timeout=1)``,
    ``receive_nothing(timeout=0.1, interval=0.01)``, ``wait(timeout=1)``,
    ``stop()``, the ``future``, ``input_queue`` and ``output_queue``
    attributes, and its semantics: after a ``receive_output`` timeout has
    cancelled the application, the next ``send_input``/``receive_output``
    raises ``asyncio.CancelledError``. The application starts on first use,
    in an empty ``contextvars`` context as under a server.

    While one of these calls runs, ``database_sync_to_async`` and sync
    consumers leave Django's database connections open (Channels does the
    same), so a ``TestCase``'s transaction survives the application.

    The close that achannels' WebSocket consumers send when a handler fails
    (1011, or 1007 for bad JSON; Channels sends none) is not part of the
    output, so tests see the error as they do with Channels.

    Beyond Channels, where nothing a passing test sees changes:
    ``receive_output`` returns as soon as the application ends instead of at
    its deadline (raising what it raised, or ``asyncio.TimeoutError``), and
    ``async with`` cancels and awaits the application on exit.
    """

    def __init__(self, application: ASGIApp, scope: Scope) -> None:
        super().__init__(application, scope)  # type: ignore[no-untyped-call]

    @property
    def future(self) -> asyncio.Task[None]:
        """The task running the application (created on first access)."""
        if self._future is None:
            # As asgiref: a server starts each connection without the test's
            # context vars. Only the send differs.
            self._future = contextvars.Context().run(
                asyncio.create_task,
                self.application(self.scope, self.input_queue.get, self._output),
            )
        task: asyncio.Task[None] = self._future
        return task

    async def _output(self, message: Message) -> None:
        # The close achannels' WebSocket consumers send as a handler fails
        # (Channels' send none): leave it out, so a test sees the error, as
        # with Channels. Servers still deliver it to real clients.
        if message.__class__ is not FailureClose:
            await self.output_queue.put(message)

    async def send_input(self, message: Message) -> None:
        """Queue ``message`` for the application's ``receive()``; raise the
        application's exception (``CancelledError`` if it was cancelled)
        if it already ended with one."""
        with connections_kept_open():
            await super().send_input(message)  # type: ignore[no-untyped-call]

    async def receive_output(self, timeout: float | None = 1) -> Message:
        """Return the next message the application sent.

        Raises what the application raised once it ended (also when it had
        already ended on entry, output queued or not, as asgiref does), and
        ``asyncio.TimeoutError`` when nothing arrives within ``timeout``
        seconds (``None``: no limit), cancelling the application, or when it
        returned without sending more.
        """
        with connections_kept_open():
            future = self.future
            if future.done():
                future.result()
            queue = self.output_queue
            if not queue.empty():
                message: Message = queue.get_nowait()
                return message
            getter = asyncio.ensure_future(queue.get())
            try:
                await asyncio.wait(
                    {getter, future},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                if not getter.done():
                    # Queue.get() loses nothing when cancelled.
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                message = getter.result()
                return message
            if future.done():
                future.result()
                raise asyncio.TimeoutError(
                    "The application ended without sending another message"
                )
            future.cancel()
            # asyncio.wait() does not raise the task's CancelledError, so only
            # a cancellation of the caller itself propagates from here.
            await asyncio.wait({future})
            raise asyncio.TimeoutError(
                f"The application sent nothing within {timeout} s; it was cancelled"
            )

    async def receive_nothing(
        self, timeout: float = 0.1, interval: float = 0.01
    ) -> bool:
        """Return True if the application sends nothing for ``timeout``
        seconds, False once a message waits (it stays queued)."""
        with connections_kept_open():
            result: bool = await super().receive_nothing(timeout, interval)  # type: ignore[no-untyped-call]
            return result

    async def wait(self, timeout: float | None = 1) -> None:
        """Wait for the application to return and raise what it raised (an
        application that was cancelled counts as ended). At ``timeout`` the
        application is cancelled and ``wait`` returns (asgiref's behaviour,
        which Channels' ``disconnect()`` inherits)."""
        with connections_kept_open():
            await super().wait(timeout)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> ApplicationCommunicator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        future = self._future
        if future is not None and not future.done():
            future.cancel()
            await asyncio.wait({future})

    def __del__(self) -> None:
        if not hasattr(self, "_future"):
            return  # a subclass's __init__ raised before ours ran
        super().__del__()  # type: ignore[no-untyped-call]
