"""The dispatch loop: feeds a consumer its messages one at a time, in order.

A consumer listens to the client (the ASGI ``receive``) and, once its layer
channel is in use (``channel_name`` was read), to that channel too:

- the client's messages are awaited and dispatched in the consumer's own
  task: no task hop, and no extra task at all for a consumer that never uses
  its channel;
- every other source gets a pump task that awaits it and dispatches when it
  has the turn, so handlers never overlap and each source's messages keep
  their order (turns are taken first come, first served);
- the first failure ends the loop: a pump that fails cancels the consumer's
  task out of ``receive``, which raises the pump's error; every pump is
  cancelled and awaited before the loop ends.

Handlers marked ``@concurrent`` (the opt-in escape from strict order) run in
a ``HandlerPool`` beside the loop instead: at most ``max_concurrent_handlers``
at a time per consumer (the loop waits for a slot, which is the
backpressure), cancelled when the consumer ends; the first error one of them
raises ends the consumer as if the loop had raised it.

A source may also run its messages in the task that produces them
(``RunsHere``): the Redis pub/sub layer's reader hands one group message to
thousands of consumers, and waking each consumer's pump task for it costs
more than the handler. When the pump is idle (waiting on its source, the
turn free), ``run_here(message)`` runs the handler's first step at once, in
the pump's context and as the pump's task (``asyncio.current_task()``,
timeouts and cancel scopes see the pump); a handler that finishes there
never wakes the pump. One that blocks is handed to the pump as a
``Resume``, which the pump awaits in order, still holding the turn, so
order, the one-handler-at-a-time rule and cancellation are as before.

The client's disconnect must get through a full pool: the handlers in the
slots may run until cancelled, and only the consumer's end cancels them. So
while a ``start()`` waits for a slot, the client is read one message ahead
(``ClientReceive``): a disconnect stops the pool (work still waiting for a
slot is dropped, not started) and is then dispatched in order; any other
message is held as the next one, so the look-ahead buffers one message at
most and the server's backpressure holds the rest (issue 12).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import sys
import traceback
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Protocol

from ._tasks import OwnedTasks
from ._types import Message

__all__ = [
    "ClientReceive",
    "HandlerPool",
    "Handlers",
    "InOrderDispatcher",
    "Resume",
    "RunHere",
    "RunsHere",
    "Turn",
]

Source = Callable[[], Awaitable[Message]]
Dispatch = Callable[[Message], Coroutine[Any, Any, None]]


class Handlers(Protocol):
    """What ``dispatch`` does, in two steps the loop can call without a
    coroutine of its own (see ``InOrderDispatcher.run``)."""

    def _start_handler(self, message: Message) -> Awaitable[None]:
        """The awaitable that handles ``message``; raises what ``dispatch``
        raises before calling a handler (no handler: ``ValueError``)."""

    def _handler_failed(self, message: Message, error: Exception) -> None:
        """Called with what awaiting the handler of ``message`` raised,
        before it propagates."""


#: Runs a message's handler in the caller's task: ``True`` when it finished
#: (or was dropped), ``False`` when the consumer is busy (deliver the message
#: as usual), or the ``Resume`` to hand the consumer's waiting source.
RunHere = Callable[[Message], "bool | Resume"]

# Needs Task(context=...), Python 3.11.
_RUN_HERE = sys.version_info >= (3, 11)

# ASGI events by which the server says the client has gone.
_CLIENT_GONE = frozenset({"websocket.disconnect", "http.disconnect"})


class Turn:
    """First-come, first-served mutual exclusion, cheaper than
    ``asyncio.Lock`` when uncontended (the usual case for a consumer): taking
    a free turn is one attribute check, with no ``async with`` machinery."""

    __slots__ = ("_busy", "_waiting")

    def __init__(self) -> None:
        self._busy = False
        # Invariant: a waiter exists only while the turn is busy; release
        # hands the turn straight to the next waiter, so nobody can overtake.
        # Created on first wait: most turns never see one, and an empty deque
        # costs 600 bytes, per connection here.
        self._waiting: deque[asyncio.Future[None]] | None = None

    def take_nowait(self) -> bool:
        """Take the turn if it is free; return whether it was."""
        if self._busy:
            return False
        self._busy = True
        return True

    async def take(self) -> None:
        """Wait for the turn and take it."""
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed the turn as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    def give_back(self) -> None:
        """Release the turn to the longest waiter, or free it."""
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False


class RunsHere(Protocol):
    """A source that can run its messages where they arrive."""

    def __call__(self) -> Awaitable[Message]: ...

    def run_here(self, run: RunHere | None) -> None:
        """Use ``run`` for each message while this source is awaited (None:
        stop)."""


class Resume:
    """A handler that started in another task and blocked (or failed
    there): awaiting this in the pump finishes it. ``turn`` is held until
    then."""

    __slots__ = ("_coroutine", "_error", "_turn", "_yielded")

    def __init__(
        self,
        turn: Turn,
        coroutine: Coroutine[Any, Any, None] | None,
        yielded: Any = None,
        error: BaseException | None = None,
    ) -> None:
        self._turn = turn
        self._coroutine = coroutine
        self._yielded = yielded
        self._error = error

    def __await__(self) -> Generator[Any, Any, None]:
        # The task now awaits what the handler awaited: the same future
        # (flagged as blocking), so the task waits on it as usual.
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        coroutine = self._coroutine
        assert coroutine is not None
        value = self._yielded
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # thrown in by the task: cancellation
                try:
                    value = coroutine.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                value = coroutine.send(sent)
            except StopIteration:
                return

    async def abandon(self) -> None:
        """Cancel the handler, wait until it has ended, and release the
        turn: the pump was cancelled before it could take this. Await it in
        the pump's task; it raises what the handler raises (its
        ``CancelledError``, as a cancelled pump would)."""
        coroutine, self._coroutine = self._coroutine, None
        self._error = None
        try:
            if coroutine is not None:
                # As if the pump had taken this and been cancelled then: the
                # handler's cleanup may await, so it is driven to its end
                # (closing it instead would cut that cleanup short).
                try:
                    yielded = coroutine.throw(asyncio.CancelledError())
                except StopIteration:
                    return
                await Resume(self._turn, coroutine, yielded)
        finally:
            self._turn.give_back()


def _release_frames(cancelled: asyncio.CancelledError) -> None:
    """Drop the locals of the finished frames the cancellation passed
    through below the one handling it (a handler's frame holds its
    consumer). Whoever keeps the error then keeps no consumer: a server may
    keep it where the garbage collector cannot see (under granian, a
    handler started in a layer's reader and cancelled in its pump leaked
    its consumer so). Failures keep their frames, for error reporters."""
    below = cancelled.__traceback__ and cancelled.__traceback__.tb_next
    if below is not None:
        traceback.clear_frames(below)


class InOrderDispatcher:
    """Dispatches what the client sends (``run``) and what sources added at
    any time (``add_source``) return, one message at a time."""

    __slots__ = ("_closed", "_dispatch", "_main", "_pumps", "_turn")

    def __init__(self, dispatch: Dispatch) -> None:
        self._dispatch = dispatch
        self._turn = Turn()
        # Created with the first source: many consumers never add one.
        self._pumps: OwnedTasks | None = None
        self._main: asyncio.Task[Any] | None = None
        self._closed = False

    def add_source(self, source: Source) -> None:
        """Also dispatch what ``source`` returns, from a pump task, until the
        loop ends; ignored once it has ended. Call it from the loop's thread."""
        if self._closed:
            return
        if self._pumps is None:
            self._pumps = OwnedTasks(self._pump_failed)
        binds = getattr(source, "run_here", None)
        if binds is None or not _RUN_HERE:
            self._pumps.spawn(self._pump(source))
            return
        # The pump's own context, so a handler started elsewhere runs in it.
        context = contextvars.copy_context()
        task = self._pumps.spawn(self._pump(source), context)
        # A partial, not a lambda: called per delivery, one Python frame less.
        binds(functools.partial(self._run_here, task, context))

    async def _pump(self, source: Source) -> None:
        turn = self._turn
        try:
            while True:
                message: Any = await source()  # a Message, or a Resume
                if message.__class__ is Resume:
                    try:
                        await message
                    finally:
                        turn.give_back()  # taken by _run_here
                        message = None
                    continue
                if self._closed:
                    continue  # the consumer is gone: drain, see run()
                if not turn.take_nowait():
                    await turn.take()
                try:
                    if not self._closed:
                        await self._dispatch(message)
                finally:
                    turn.give_back()
        except asyncio.CancelledError as cancelled:  # the consumer's end
            _release_frames(cancelled)
            raise
        finally:
            binds = getattr(source, "run_here", None)
            if binds is not None:
                binds(None)

    def _run_here(
        self,
        pump: asyncio.Task[Any],
        context: contextvars.Context,
        message: Message,
    ) -> bool | Resume:
        """Start dispatching ``message`` in the running task on behalf of the
        idle ``pump`` (see the module docstring)."""
        if self._closed:
            return True  # dropped, as the pump drops it
        turn = self._turn
        # take_nowait() and give_back() inlined: this runs per delivery, and
        # a free turn with nobody waiting is the usual case.
        if turn._busy:
            return False
        turn._busy = True
        coroutine = self._dispatch(message)
        if coroutine.__class__ is not types.CoroutineType:
            # A dispatch() override returning some other awaitable.
            coroutine = _awaiting(coroutine)
        loop = pump.get_loop()
        current = _current_task(loop)
        if current is not None:
            _leave_task(loop, current)
        _enter_task(loop, pump)
        try:
            yielded = context.run(coroutine.send, None)
        except StopIteration:
            if turn._waiting:
                turn.give_back()
            else:
                turn._busy = False
            return True
        except BaseException as error:  # raised in the pump, which it ends
            return Resume(turn, None, error=error)
        finally:
            _leave_task(loop, pump)
            if current is not None:
                _enter_task(loop, current)
        return Resume(turn, coroutine, yielded)

    def _pump_failed(self, failure: BaseException) -> None:
        if self._main is not None:
            self._main.cancel()  # out of receive(); run() raises the failure

    async def run(self, receive: Source, handlers: Handlers | None = None) -> None:
        """Dispatch until a handler or source raises; raise that, after
        cancelling and awaiting every pump. Never returns normally.

        With ``handlers``, the client's messages skip ``dispatch``: the loop
        awaits what ``handlers._start_handler(message)`` returns (the
        handler's own coroutine) and reports what that raises to
        ``handlers._handler_failed``. That is one coroutine fewer per
        message, for a consumer whose ``dispatch`` is the default."""
        self._main = asyncio.current_task()
        turn = self._turn
        try:
            if self._pumps is not None and self._pumps.failure is not None:
                raise self._pumps.failure
            while True:
                message = await receive()
                # Turn.take_nowait() and give_back() inlined: two calls fewer
                # per message.
                if turn._busy:
                    await turn.take()
                else:
                    turn._busy = True
                try:
                    if handlers is None:
                        await self._dispatch(message)
                    else:
                        handling = handlers._start_handler(message)
                        try:
                            await handling
                        except Exception as exc:
                            handlers._handler_failed(message, exc)
                            raise
                        # Else an idle connection keeps the finished one.
                        del handling
                finally:
                    if turn._waiting:
                        turn.give_back()
                    else:
                        turn._busy = False
        except asyncio.CancelledError:
            failure = None if self._pumps is None else self._pumps.failure
            if failure is None or not _only_our_cancel():
                raise
            raise failure from None
        finally:
            self._closed = True
            self._main = None
            pumps = self._pumps
            if pumps:
                # A pump cancelled while the layer hands it a message puts
                # the message back, and a dead channel would keep it until it
                # expires. One turn of the loop lets each pump take what was
                # handed or queued to it, drop it and wait again, empty.
                await asyncio.sleep(0)
                # No handler outlives its consumer.
                await pumps.aclose()


async def _awaiting(awaitable: Awaitable[None]) -> None:
    await awaitable


# What a task's step does around running its coroutine: mark the task as
# the loop's current one (asyncio.current_task(), timeouts, cancel scopes).
_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task
# Before 3.12 asyncio.current_task() is Python code around this dict lookup;
# _run_here reads it per delivery.
_current_task: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = (
    asyncio.current_task
    if sys.version_info >= (3, 12)
    else asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
)


def _only_our_cancel() -> bool:
    """Whether the cancellation being handled is only the one a failing pump
    requested (it is then undone), not also one from outside."""
    if sys.version_info < (3, 11):
        return True  # no cancellation counts to tell them apart
    task = asyncio.current_task()
    assert task is not None
    return task.uncancel() == 0


class HandlerPool:
    """The concurrent handler tasks of one consumer.

    ``on_wait`` (settable) is called whenever a ``start()`` has to wait for
    a slot.
    """

    def __init__(self, limit: int, on_wait: Callable[[], object] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"max_concurrent_handlers must be at least 1, got {limit}")
        self._free = limit
        # start() calls waiting for a slot, first come first served; each
        # future's result says whether it got one (False: the pool stopped).
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self.on_wait = on_wait
        self._stopped = False
        self._tasks = OwnedTasks(self._handler_failed)
        self._failure: asyncio.Future[Message] | None = None

    @property
    def waiting(self) -> bool:
        """Whether a ``start()`` waits for a slot."""
        return bool(self._waiting)

    def _failure_future(self) -> asyncio.Future[Message]:
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure

    async def start(
        self, handler: Callable[[Message], Awaitable[None]], message: Message
    ) -> None:
        """Start ``handler(message)`` in a task once a slot is free; return
        without starting it if the pool stops first (see :meth:`stop`)."""
        if self._stopped:
            return
        if self._free:
            self._free -= 1
        elif not await self._wait_for_slot():
            return
        self._tasks.spawn(self._run(handler, message))

    async def _wait_for_slot(self) -> bool:
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self.on_wait is not None:
            self.on_wait()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._release()  # handed a slot as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            raise

    def _release(self) -> None:
        """Hand a finished handler's slot to the longest waiter, or free it."""
        waiting = self._waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._free += 1

    def stop(self) -> None:
        """Start nothing more: the client has gone. A ``start()`` waiting
        for a slot returns at once without starting its handler, so the
        dispatch turn it holds passes on to the disconnect; running handlers
        go on until :meth:`aclose`.

        Without this, handlers that run until cancelled and fill every slot
        deadlock the consumer: the turn waits for a slot, the slots for the
        cancellation, and the cancellation for the disconnect, which waits
        for the turn (issue 12)."""
        self._stopped = True
        waiting, self._waiting = self._waiting, deque()
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(False)

    async def _run(
        self, handler: Callable[[Message], Awaitable[None]], message: Message
    ) -> None:
        try:
            await handler(message)
        finally:
            self._release()

    def _handler_failed(self, failure: BaseException) -> None:
        # StopConsumer included: it ends the consumer.
        future = self._failure_future()
        if not future.done():
            future.set_exception(failure)

    async def first_failure(self) -> Message:
        """Wait until a handler fails, then raise its error. Used as one more
        message source of the dispatch loop, so a failure ends the loop."""
        return await self._failure_future()

    async def aclose(self) -> None:
        """Cancel every running handler and wait for them."""
        self.stop()
        await self._tasks.aclose()
        if self._failure is not None and not self._failure.done():
            self._failure.cancel()


class ClientReceive:
    """The client's ``receive`` for a consumer with a ``HandlerPool``: it
    stops the pool when the client has gone, and reads one message ahead
    while a ``start()`` waits for a slot (see the module docstring).

    Invariant: while the pool has a waiting ``start()``, somebody reads the
    client (the dispatch loop, or the look-ahead task), unless the
    look-ahead already holds a message that is no disconnect.
    """

    __slots__ = ("_ahead", "_closed", "_pool", "_receive", "_receiving")

    def __init__(self, receive: Source, pool: HandlerPool) -> None:
        self._receive = receive
        self._pool = pool
        self._ahead: asyncio.Task[Message] | None = None
        self._receiving = False
        self._closed = False

    async def __call__(self) -> Message:
        ahead = self._ahead
        if ahead is not None:
            self._ahead = None
            message = await ahead
            # Its done callback may not have run yet; stopping twice is fine.
            self._seen(message)
        else:
            self._receiving = True
            try:
                message = await self._receive()
            finally:
                self._receiving = False
            self._seen(message)
        if self._pool.waiting:
            # The loop takes this message to dispatch, maybe waiting for the
            # turn a waiting start() holds: keep the client read meanwhile.
            self.look_ahead()
        return message

    def _seen(self, message: Message) -> None:
        if message.get("type") in _CLIENT_GONE:
            self._pool.stop()

    def look_ahead(self) -> None:
        """Read the client's next message now, in a task, unless somebody
        reads it already or a message is held."""
        if self._receiving or self._ahead is not None or self._closed:
            return
        self._ahead = task = asyncio.ensure_future(self._receive())
        task.add_done_callback(self._ahead_done)

    def _ahead_done(self, task: asyncio.Task[Message]) -> None:
        if task.cancelled() or task.exception() is not None:
            return  # raised to the loop when it takes the message
        self._seen(task.result())

    async def aclose(self) -> None:
        """Cancel a look-ahead still waiting: the loop has ended."""
        self._closed = True
        ahead, self._ahead = self._ahead, None
        if ahead is not None and not ahead.done():
            ahead.cancel()
            await asyncio.wait({ahead})
