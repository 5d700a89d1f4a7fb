"""Consumers: one instance per connection, handlers chosen by message type."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, async_to_sync

from . import DEFAULT_CHANNEL_LAYER
from ._db import aclose_old_connections as aclose_old_connections
from ._db import database_sync_to_async as database_sync_to_async
from ._dispatch import ClientReceive, HandlerPool, InOrderDispatcher
from ._django import close_old_connections
from ._explain import explain, explain_missing_layer, how_to_configure_layer
from ._lifespan import running_consumers
from ._types import ChannelLayerProtocol, Message, Receive, Scope, Send
from .exceptions import AcceptConnection, DenyConnection, StopConsumer
from .layers import get_channel_layer
from .presence import Presence
from .utils import await_many_dispatch as await_many_dispatch

__all__ = ["AsyncConsumer", "SyncConsumer", "concurrent", "get_handler_name"]


# Message type -> handler name, for types already seen: a consumer sees the
# same few types all its life. Bounded so hostile types cannot grow it.
_handler_names: dict[str, str] = {}
_HANDLER_NAMES_LIMIT = 1_000


# Raised by handlers to steer the consumer, not as errors.
_CONTROL_FLOW = (StopConsumer, AcceptConnection, DenyConnection)
_RAISED_BY = "raised by "


def name_the_handler(consumer: Any, message: Message, exc: BaseException) -> None:
    """Note on ``exc`` which consumer raised it, for which path and message
    type: the server's one log record of it then says so (issue 12). The
    innermost dispatch names it; outer ones leave it."""
    if isinstance(exc, _CONTROL_FLOW) or not isinstance(message, dict):
        return  # not a dict: the error already says what came in
    if any(note.startswith(_RAISED_BY) for note in getattr(exc, "__notes__", ())):
        return
    scope = getattr(consumer, "scope", None) or {}
    explain(
        exc,
        f"{_RAISED_BY}{type(consumer).__qualname__} handling a "
        f"{message.get('type')!r} message for {scope.get('path', '?')!r}",
    )


def get_handler_name(message: Message) -> str:
    """Return the handler method name for ``message``: its ``type`` with
    ``.`` replaced by ``_``.

    Raises ``ValueError`` when the message is not a dict, has no ``type``,
    its type is not a string, or the name would start with an underscore
    (which would reach private methods).
    """
    if not isinstance(message, dict):
        raise ValueError(
            f"Incoming message is a {type(message).__name__}, not a dict with a 'type'"
        )
    if "type" not in message:
        raise ValueError("Incoming message has no 'type' attribute")
    message_type = message["type"]
    if not isinstance(message_type, str):
        raise ValueError(
            f"Incoming message has a {type(message_type).__name__} 'type'; "
            "it must be a string such as 'chat.message'"
        )
    handler_name = message_type.replace(".", "_")
    if handler_name.startswith("_"):
        raise ValueError(
            f"Malformed type in message (leading underscore): {message_type!r}"
        )
    if len(_handler_names) >= _HANDLER_NAMES_LIMIT:
        _handler_names.clear()
    _handler_names[message_type] = handler_name
    return handler_name


# Set on handlers by @concurrent; read once per class by __init_subclass__.
_CONCURRENT_MARK = "_achannels_concurrent"

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def concurrent(handler: Handler) -> Handler:
    """Mark an async consumer handler to run concurrently with later messages.

    In Channels one slow handler holds back every later frame and group
    message of its connection. A ``@concurrent`` handler runs in its own task
    beside the in-order loop instead, at most ``max_concurrent_handlers`` at a
    time per consumer, and is cancelled when the consumer ends; an error it
    raises ends the consumer. Use it for handlers whose order does not matter
    and that may be slow; everything else keeps running one message at a
    time, in order. Raises ``TypeError`` for a function that is not async.
    """
    checked: Any = handler  # keep `handler`'s type: the check below narrows it
    if not inspect.iscoroutinefunction(checked):
        raise TypeError(
            f"@concurrent needs an async handler; {handler.__qualname__} is not a "
            "coroutine function (sync consumers run handlers in order in their thread)"
        )
    setattr(handler, _CONCURRENT_MARK, True)
    return handler


class AsyncConsumer:
    """Base consumer: an ASGI application instance for one connection.

    It receives messages from the client and, when a channel layer is
    configured for ``channel_layer_alias``, from its own layer channel
    (``channel_name``), and calls the handler named after each message's
    ``type`` one message at a time, in order. A handler raising
    ``StopConsumer`` ends the consumer cleanly.

    Unlike Channels 4.2+, dispatching a message never hops to a thread to
    close database connections; use ``database_sync_to_async`` for ORM work,
    which does that cleanup in its own thread.

    Beyond Channels: handlers decorated with ``@concurrent`` run beside the
    in-order loop, at most ``max_concurrent_handlers`` at a time, and are
    cancelled when the consumer ends.
    """

    _sync: ClassVar[bool] = False
    channel_layer_alias: ClassVar[str] = DEFAULT_CHANNEL_LAYER
    #: Cap on ``@concurrent`` handlers running at once for one connection.
    max_concurrent_handlers: ClassVar[int] = 10
    # Names of the @concurrent handlers, found once per class, not per message.
    _concurrent_handlers: ClassVar[frozenset[str]] = frozenset()
    # The consumer API that achannels' own classes define (send, close,
    # dispatch, ...): no message type may call it. ASGI event handlers
    # (websocket_*, http_*) are handlers, so they are not in it.
    _not_handlers: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._not_handlers = frozenset(
            name
            for base in cls.__mro__
            if base.__module__.startswith("achannels.")
            for name in vars(base)
            if not name.startswith(("_", "websocket_", "http_"))
        )
        if inspect.getattr_static(cls, "presence") is not _PRESENCE:
            # `presence` is new in achannels: a consumer written for Channels
            # may define its own (a handler of "presence" messages, say).
            cls._not_handlers -= {"presence"}
        cls._concurrent_handlers = frozenset(
            name
            for name in dir(cls)
            if not name.startswith("_")
            and getattr(getattr(cls, name, None), _CONCURRENT_MARK, False)
        )
        if cls._concurrent_handlers and cls._sync:
            raise TypeError(
                f"{cls.__qualname__}: @concurrent handlers need an async consumer; "
                f"found {sorted(cls._concurrent_handlers)}"
            )

    scope: Scope
    channel_layer: ChannelLayerProtocol | None
    base_send: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Channels' generic consumers accept and ignore init arguments; keep
        # that so `as_asgi(**initkwargs)` works with consumers written for it.
        self.channel_layer = None
        self._handler_pool: HandlerPool | None = None
        self._dispatcher: InOrderDispatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel_name: str | None = None
        self._listening = False

    @functools.cached_property
    def presence(self) -> Presence:
        """This connection's presence (``track``, ``update``, ``untrack``,
        ``list``; not in Channels); its entries end with the connection.

        Made on first use. A subclass or instance may define its own
        ``presence`` (code written for Channels may); then that one is used.
        """
        return Presence(self)

    @property
    def channel_name(self) -> str:
        """This consumer's channel on its layer; ``AttributeError`` without
        a layer.

        With achannels' own layers the consumer starts its listener task the
        first time anyone reads the name, or (in-memory layer) when the first
        message arrives on the channel, which is listed in
        ``layer.channels`` from the consumer's start as in Channels; a
        consumer that never uses its channel costs no task. With any other
        layer it listens from the start, as Channels does, since that
        layer's ``receive()`` may have effects of its own.
        """
        if self._channel_name is None:
            raise AttributeError(
                f"{type(self).__name__} has no channel_name: "
                + how_to_configure_layer(self.channel_layer_alias)
            )
        if not self._listening:
            self._listen()
        return self._channel_name

    @channel_name.setter
    def channel_name(self, name: str) -> None:
        self._channel_name = name
        self._listening = False

    @property
    def channel_receive(self) -> Callable[[], Awaitable[Message]]:
        """Receive the next message on this consumer's channel."""
        if self.channel_layer is None:
            raise AttributeError(f"{type(self).__name__} has no channel layer")
        return functools.partial(self.channel_layer.receive, self.channel_name)

    def _listen(self) -> None:
        dispatcher, loop = self._dispatcher, self._loop
        if dispatcher is None or loop is None:
            return  # not running yet: the first read after the start listens
        self._listening = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        source = self._channel_source()
        if running is loop:
            dispatcher.add_source(source)
        else:
            # Read by a sync handler in its worker thread; the layer keeps
            # whatever arrives before the listener starts.
            loop.call_soon_threadsafe(dispatcher.add_source, source)

    def _channel_source(self) -> Callable[[], Awaitable[Message]]:
        """What the listener awaits for each message: ``channel_receive``,
        or the layer's own faster equivalent when it has one (``_listener``)
        and neither it nor ``channel_receive`` was replaced."""
        listener = getattr(self.channel_layer, "_listener", None)
        if listener is not None and (
            type(self).channel_receive is AsyncConsumer.channel_receive
        ):
            source: Callable[[], Awaitable[Message]] | None = listener(
                self.channel_name
            )
            if source is not None:
                return source
        return self.channel_receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the consumer for one connection until it stops.

        Each call starts fresh, as in Channels, even on an instance used as
        the application for several connections: a new channel, listener and
        dispatcher."""
        self.scope = scope
        self._loop = asyncio.get_running_loop()
        self._dispatcher = InOrderDispatcher(self.dispatch)
        self._handler_pool = None
        layer = self.channel_layer = get_channel_layer(self.channel_layer_alias)
        watching: Any = None
        if layer is None:
            self._channel_name = None
            self._listening = False
        else:
            self.channel_name = name = await layer.new_channel()
            watch = _channel_watch(layer)
            if watch is None:
                # Not our layer: receive from the start, as Channels does,
                # before the first client message is handled.
                self._listen()
                await asyncio.sleep(0)
            elif watch is not _LAZY:
                watching = watch
                watching._watch_channel(name, self)
        running_consumers.enter()
        try:
            try:
                await self._run(receive, send)
            except BaseException as exc:
                ending = self._run_ended(exc)
                if ending is None or not await ending:
                    raise
            else:
                ending = self._run_ended(None)
                if ending is not None:
                    await ending
        except StopConsumer:
            pass
        except AttributeError as exc:
            # `self.channel_layer.group_add(...)` without a configured layer:
            # the layer stays None, as in Channels; the error says why.
            explain_missing_layer(self, exc)
            raise
        finally:
            presence = self.__dict__.get("presence")
            if presence.__class__ is Presence:
                await presence.aclose()
            running_consumers.leave()
            if watching is not None:
                watching._unwatch_channel(name, self)

    def _run_ended(self, error: BaseException | None) -> Awaitable[bool] | None:
        """The WebSocket edge's hook for the end of ``_run`` (``error``: what
        ended it): None when there is nothing to do, else an awaitable that
        cleans up and tells whether ``error`` was handled (not re-raised).

        A hook called here rather than a coroutine wrapping ``_run``: an idle
        connection would keep that coroutine's frame all its life."""
        return None

    def _wake_listener(self) -> None:
        # The in-memory layer calls this when a message is queued for our
        # channel before anyone read channel_name (a test that took the
        # name from layer.channels, say).
        if not self._listening:
            self._listen()

    def _run(self, receive: Receive, send: Send) -> Awaitable[None]:
        """Dispatch until a handler raises (the returned awaitable does).

        The WebSocket edge overrides this to watch ``send`` and to clean up
        the connection's end. A plain method returning what is awaited, not
        a coroutine awaiting it: an idle connection keeps one coroutine frame
        per level of its call chain, a few hundred bytes each.
        """
        self.base_send = async_to_sync(send) if self._sync else send
        dispatcher = self._dispatcher
        assert dispatcher is not None, "__call__ creates the dispatcher first"
        if self._concurrent_handlers:
            return self._run_with_pool(dispatcher, receive)
        if getattr(self.dispatch, "__func__", None) is _DISPATCH:
            # The default dispatch: the loop calls the handler itself, which
            # saves a coroutine per client message. An override (of the
            # class or the instance) is called as before.
            return dispatcher.run(receive, self)
        return dispatcher.run(receive)

    async def _run_with_pool(
        self, dispatcher: InOrderDispatcher, receive: Callable[[], Awaitable[Message]]
    ) -> None:
        self._handler_pool = pool = HandlerPool(self.max_concurrent_handlers)
        # While the pool is full the client is read one message ahead, so
        # its disconnect gets through (see _dispatch).
        client = ClientReceive(receive, pool)
        pool.on_wait = client.look_ahead
        dispatcher.add_source(pool.first_failure)
        try:
            await dispatcher.run(client)
        finally:
            await client.aclose()
            await pool.aclose()

    def _handler_for(self, message: Message) -> tuple[str, Callable[..., Any]]:
        """The handler method for ``message`` and its name; ``ValueError``
        when there is none."""
        try:
            if message.__class__ is not dict:
                raise TypeError  # anything unusual takes the validating path
            name = _handler_names[message["type"]]
        except (KeyError, TypeError):
            name = get_handler_name(message)  # validates, then remembers
        if name in self._not_handlers:
            # Channels would call e.g. send() or dispatch() with the message
            # (dispatch recursing until RecursionError): a message type that
            # came from the wire must never reach the consumer's own API.
            raise ValueError(
                f"No handler for message type {message['type']}: "
                f"{type(self).__name__}.{name} is not a message handler"
            )
        handler = getattr(self, name, None)
        # A type naming an attribute that is no method ("scope", "groups")
        # has no handler either, rather than a "not callable" TypeError.
        if handler is None or not callable(handler):
            raise ValueError(f"No handler for message type {message['type']}")
        return name, handler

    def _start_handler(self, message: Message) -> Awaitable[None]:
        # What dispatch() awaits for a client message, for the dispatch loop
        # to await itself (see _run): no @concurrent handlers there.
        return self._handler_for(message)[1](message)  # type: ignore[no-any-return]

    def _handler_failed(self, message: Message, error: Exception) -> None:
        name_the_handler(self, message, error)

    async def dispatch(self, message: Message) -> None:
        """Call the handler for ``message``; ``ValueError`` if there is none."""
        name, handler = self._handler_for(message)
        if self._handler_pool is not None and name in self._concurrent_handlers:
            await self._handler_pool.start(
                functools.partial(self._call_concurrent, handler), message
            )
            return
        try:
            await handler(message)
        except Exception as exc:
            name_the_handler(self, message, exc)
            raise

    async def _call_concurrent(
        self, handler: Callable[[Message], Awaitable[None]], message: Message
    ) -> None:
        try:
            await handler(message)
        except Exception as exc:
            name_the_handler(self, message, exc)
            raise

    async def send(self, message: Message) -> None:
        """Send an ASGI event to the client (overridable)."""
        await self.base_send(message)

    @classmethod
    def as_asgi(
        cls, **initkwargs: Any
    ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """Return an ASGI 3 application that creates one consumer per
        connection with ``cls(**initkwargs)``.

        The callable carries ``consumer_class`` and ``consumer_initkwargs``
        (routing and tests read them) and the class's name and docstring.
        """

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            consumer = cls(**initkwargs)
            await consumer(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        # For our routers (see consumer_factory), naming ``app`` itself: a
        # wrapper made with functools.wraps copies it but is not ``app``.
        setattr(app, _FACTORY, (app, functools.partial(cls, **initkwargs)))
        return app


_PRESENCE = AsyncConsumer.__dict__["presence"]
# The default dispatch, as defined here: a class or instance that replaced it
# (a test's patch included) gets its own called for every message.
_DISPATCH = AsyncConsumer.dispatch

_FACTORY = "_achannels_consumer_factory"


def consumer_factory(app: object) -> Callable[[], AsyncConsumer] | None:
    """The consumer maker behind ``app`` if it is an ``as_asgi()``
    application, else None.

    A router can then run the consumer itself rather than await ``app``,
    which only makes the consumer and awaits it: the same run, without a
    coroutine frame that an idle connection would keep all its life."""
    made = getattr(app, _FACTORY, None)
    if made is None or made[0] is not app:
        return None
    factory: Callable[[], AsyncConsumer] = made[1]
    return factory


class SyncConsumer(AsyncConsumer):
    """Consumer whose handlers are plain functions run in a worker thread.

    Each connection gets its own worker thread (an asgiref
    ``ThreadSensitiveContext``), so one blocking handler does not stall
    every other sync consumer of the process, as it does in Channels where
    they all share one thread. When Django is configured with a database,
    stale connections are closed before and after each handler, in that
    thread. ``send`` and other layer calls from handlers use
    ``async_to_sync``.
    """

    _sync: ClassVar[bool] = True
    # The connection's context (its ThreadSensitiveContext), set by __call__.
    _context: contextvars.Context | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Everything the connection runs, its own cleanup included, shares
        # the connection's worker thread.
        async with ThreadSensitiveContext():
            self._context = contextvars.copy_context()
            await super().__call__(scope, receive, send)

    def _listen(self) -> None:
        # The first read of channel_name may happen inside an async_to_sync
        # call (``async_to_sync(self.presence.track)``), whose context dies
        # with the call: the listener must run in the connection's own.
        if self._context is None:
            super()._listen()
        else:
            self._context.run(super()._listen)

    async def dispatch(self, message: Message) -> None:
        try:
            await _run_in_consumer_thread(self._dispatch_sync, message)
        except Exception as exc:
            name_the_handler(self, message, exc)
            raise

    def _dispatch_sync(self, message: Message) -> None:
        _, handler = self._handler_for(message)
        close_old_connections()
        try:
            handler(message)
        finally:
            close_old_connections()

    def send(self, message: Message) -> None:  # type: ignore[override]
        """Send an ASGI event to the client from the handler's thread."""
        self.base_send(message)


# A layer's way to learn that a consumer's channel is in use, per layer class:
# the layer itself if it watches channels (in-memory: ``_watch_channel(name,
# consumer)`` lists the channel now and calls ``consumer._wake_listener()`` on
# the first message queued; ``_unwatch_channel`` undoes it), ``_LAZY`` for our
# other layers (nothing to do until channel_name is read), or None for a
# layer that is not ours, whose receive() may have side effects.
_LAZY: Any = object()
_watches: dict[type, bool] = {}


def _channel_watch(layer: ChannelLayerProtocol) -> Any:
    kind = type(layer)
    ours = _watches.get(kind)
    if ours is None:
        receive_impl = getattr(kind, "receive", None)
        module = getattr(receive_impl, "__module__", None) or ""
        ours = _watches[kind] = module.startswith("achannels.")
    if not ours:
        return None
    return layer if hasattr(kind, "_watch_channel") else _LAZY


async def _run_in_consumer_thread(
    func: Callable[[Message], None], message: Message
) -> None:
    # thread_sensitive=True inside the consumer's ThreadSensitiveContext means
    # "this connection's own thread", created on first use.
    await SyncToAsync(func, thread_sensitive=True)(message)
