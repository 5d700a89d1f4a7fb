"""Routers: every router is itself an ASGI application.

``ProtocolTypeRouter`` splits on ``scope["type"]`` (and answers ``lifespan``
itself), ``URLRouter`` on the path, ``ChannelNameRouter`` on the worker
channel. Routes come from Django's ``path()``/``re_path()`` or, without
Django, from this module's own ``path()``/``re_path()``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._lifespan import answer_lifespan
from ._paths import (
    Match,
    RegexPattern,
    RoutePattern,
    URLPattern,
    literal_prefix,
    prefix_pattern,
    register_converter,
)
from ._types import ASGIApp, Receive, Scope, Send
from .consumer import consumer_factory

__all__ = [
    "ChannelNameRouter",
    "ProtocolTypeRouter",
    "URLRouter",
    "get_default_application",
    "path",
    "re_path",
    "register_converter",
]

logger = logging.getLogger("achannels.routing")


def get_default_application() -> Any:
    """Return the object named by Django's ``ASGI_APPLICATION`` setting.

    Raises ``django.core.exceptions.ImproperlyConfigured`` when the setting is
    missing, its module cannot be imported (the import error is chained and
    quoted) or lacks the attribute. Needs Django; settings must be configured.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        module_path, name = settings.ASGI_APPLICATION.rsplit(".", 1)
    except (AttributeError, ValueError):
        raise ImproperlyConfigured(
            "Cannot find ASGI_APPLICATION setting: set it to the dotted path of "
            "your application, e.g. 'myproject.asgi.application'"
        ) from None
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Cannot import ASGI_APPLICATION module {module_path!r}: {exc}"
        ) from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImproperlyConfigured(
            f"Cannot find {name!r} in ASGI_APPLICATION module {module_path}"
        ) from None


class ProtocolTypeRouter:
    """Dispatch each connection to the application for its ``scope["type"]``.

    ``application_mapping`` maps scope types (``"http"``, ``"websocket"``,
    ``"channel"``, ...) to ASGI applications. Unlike Channels, a ``lifespan``
    scope without an application of its own is answered here: startup
    completes at once, shutdown closes every channel layer built so far
    (``lifespan.shutdown.failed`` if that raises). Any other unknown type
    raises ``ValueError`` naming it and the known ones.
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]):
        for scope_type, application in application_mapping.items():
            _check_not_consumer_class(
                application, f"ProtocolTypeRouter[{scope_type!r}]"
            )
        self.application_mapping = application_mapping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        application = self.application_mapping.get(scope_type)
        if application is not None:
            return await _start(application, scope, receive, send)
        if scope_type == "lifespan":
            return await answer_lifespan(scope, receive, send)
        raise ValueError(
            f"No application configured for scope type {scope_type!r}; "
            f"configured types: {', '.join(map(repr, self.application_mapping))}"
        )


class _NoRouteFound(ValueError):
    """Raised by a nested URLRouter so the router around it tries its next route."""


def path(
    route: str,
    view: Callable[..., Any],
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
) -> URLPattern:
    """Route ``route`` (Django syntax: ``"room/<int:pk>/"``) to ``view``.

    Works without Django. ``view`` is an ASGI application (``Consumer.as_asgi()``
    or a nested ``URLRouter``); ``kwargs`` are added to
    ``scope["url_route"]["kwargs"]``. Converters: ``str`` (the default),
    ``int``, ``slug``, ``uuid``, ``path`` and those added with
    ``register_converter``; a converter whose ``to_python`` raises
    ``ValueError`` makes the route not match. Raises ``ValueError`` for an
    unknown converter or an invalid parameter name, ``TypeError`` for a view
    that is not callable or ``kwargs`` that is not a dict.
    """
    return URLPattern(
        RoutePattern(route, name), _check_view(view, kwargs, route), kwargs, name
    )


def re_path(
    route: str,
    view: Callable[..., Any],
    kwargs: dict[str, Any] | None = None,
    name: str | None = None,
) -> URLPattern:
    """Route paths matching the regular expression ``route`` to ``view``.

    Works without Django; semantics as Django's ``re_path`` (named groups to
    kwargs, otherwise positional args). Raises ``ValueError`` for an invalid
    regular expression, ``TypeError`` as ``path()`` does.
    """
    return URLPattern(
        RegexPattern(route, name), _check_view(view, kwargs, route), kwargs, name
    )


def _check_view(
    view: Callable[..., Any], kwargs: dict[str, Any] | None, route: str
) -> Callable[..., Any]:
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(
            f"kwargs argument must be a dict, but got {type(kwargs).__name__}"
        )
    if not callable(view):
        raise TypeError(
            f"view must be an ASGI application (e.g. Consumer.as_asgi() or "
            f"URLRouter([...])), got {view!r}"
        )
    _check_not_consumer_class(view, f"route {route!r}")
    return view


def _check_not_consumer_class(app: object, where: str) -> None:
    """Refuse a consumer class where an ASGI application belongs.

    A class is callable, so it would only fail on the first connection, with
    "object ... can't be used in 'await' expression". Consumer instances
    (which Channels accepts) are applications and pass.
    """
    if isinstance(app, type) and callable(getattr(app, "as_asgi", None)):
        name = app.__qualname__
        raise TypeError(
            f"{where} got the consumer class {app.__module__}.{name}, not an ASGI "
            f"application: did you forget .as_asgi()? Route {name}.as_asgi()"
        )


def _routes_inside(app: object) -> bool:
    """Whether ``app`` is, or wraps through middleware ``.inner``, a URL router.

    Such an app continues routing on ``scope["path_remaining"]``, so its route
    must match a prefix, not a whole path. Channels only looks at the app
    itself, so ``path("chat/", AuthMiddlewareStack(URLRouter(...)))`` never
    matched there; following ``.inner`` fixes that.
    """
    seen = 0
    while app is not None and seen < 32:
        if isinstance(app, URLRouter) or getattr(app, "_path_routing", False) is True:
            return True
        app = getattr(app, "inner", None)
        seen += 1
    return False


@dataclass(frozen=True)
class _Route:
    #: Literal start every matching path has; checked before ``match``.
    prefix: str
    match: Callable[[str], Match | None]
    app: ASGIApp
    extra_kwargs: dict[str, Any]
    #: A URLRouter given directly: resolved without calling it.
    router: URLRouter | None
    #: A router behind middleware: it reports "no match" by raising.
    wraps_router: bool


class _Resolved(NamedTuple):
    """A route that matched a path, with what it captured."""

    app: ASGIApp
    #: The rest of the path, for a router behind ``app`` to route on.
    rest: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: ``app`` is a router behind middleware: it reports "no match" by raising.
    wraps_router: bool


class URLRouter:
    """Dispatch to the first route whose pattern matches the path.

    ``routes`` are results of Django's ``path()``/``re_path()`` or of
    ``achannels.routing.path``/``re_path``. Leading slashes are ignored
    (write ``"ws/chat/"``); the outermost router strips ``scope["root_path"]``
    first. A route may lead to a nested ``URLRouter`` (directly or behind
    middleware): its pattern then matches a prefix and the nested router
    routes the rest. Django's ``include()`` raises ``ImproperlyConfigured``,
    as in Channels.

    The application gets a copy of the scope with ``url_route`` set to
    ``{"args": ..., "kwargs": ...}`` (captured values of every level, then the
    route's extra ``kwargs``, inner levels winning) and ``path_remaining``.
    Raises ``ValueError("No route found for path ...")`` when nothing matches,
    as Channels does, where the caller can see it (a direct call, a
    communicator); and ``ValueError`` when the scope has no ``path``. Served
    by a server (the scope has ``asgi``), an unmatched request is answered
    with 404 (a WebSocket handshake where the server supports
    ``websocket.http.response``, else 403) and one WARNING line, not a 500
    and a traceback per stray request.
    """

    #: Channels' marker for "this app routes on path_remaining"; kept so
    #: third-party routers written for Channels nest the same way.
    _path_routing = True

    def __init__(self, routes: Iterable[object]):
        self.routes = list(routes)
        # Precompiled: matching runs on every connection.
        self._routes = tuple(self._compile(route) for route in self.routes)
        # Whether some route (here or in a router nested directly) leads
        # into a router behind middleware: then routing awaits as it goes.
        self._wraps_routers: bool = any(
            route.wraps_router
            or (route.router is not None and route.router._wraps_routers)
            for route in self._routes
        )

    @staticmethod
    def _compile(route: object) -> _Route:
        pattern = getattr(route, "pattern", None)
        if pattern is None or not callable(getattr(pattern, "match", None)):
            raise TypeError(
                f"URLRouter routes must come from path() or re_path(), got {route!r}"
            )
        extra_kwargs = dict(
            getattr(route, "default_args", None)
            or getattr(route, "default_kwargs", None)
            or {}
        )
        prefix = literal_prefix(pattern)
        app = getattr(route, "callback", None)
        if app is None and getattr(route, "url_patterns", None) is not None:
            # Channels refuses Django's include() with this very error, and
            # its tests expect it: a nested URLRouter is the way to nest.
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"{route}: include() is not supported in URLRouter. Use nested "
                "URLRouter instances instead."
            )
        if not callable(app):
            raise TypeError(f"Route {route!r} has no ASGI application to route to")
        _check_not_consumer_class(app, f"URLRouter route {str(pattern)!r}")
        if isinstance(app, URLRouter):
            match = prefix_pattern(pattern).match
            return _Route(prefix, match, app, extra_kwargs, app, False)
        if _routes_inside(app):
            match = prefix_pattern(pattern).match
            return _Route(prefix, match, app, extra_kwargs, None, True)
        return _Route(prefix, pattern.match, app, extra_kwargs, None, False)

    def _resolve(self, path: str) -> Iterator[_Resolved]:
        """Yield the matching routes in order, descending into direct routers."""
        path = path.lstrip("/")
        for route in self._routes:
            if not path.startswith(route.prefix):
                continue
            found = route.match(path)
            if found is None:
                continue
            rest, args, kwargs = found
            if route.extra_kwargs:
                kwargs = {**kwargs, **route.extra_kwargs}
            if route.router is None:
                yield _Resolved(route.app, rest, args, kwargs, route.wraps_router)
                continue
            for inner in route.router._resolve(rest):
                yield _Resolved(
                    inner.app,
                    inner.rest,
                    args + inner.args,
                    {**kwargs, **inner.kwargs},
                    inner.wraps_router,
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return await self._route(scope, receive, send)

    def _route(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """What ``__call__`` awaits: the matched application, started.

        A plain method, so that the ``ProtocolTypeRouter`` around this
        router awaits the application with no coroutine of this router in
        between: an idle connection keeps a frame per level of its chain."""
        nested = "path_remaining" in scope
        path: str | None = scope["path_remaining"] if nested else scope.get("path")
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        if not nested:
            root_path: str = scope.get("root_path", "")
            if root_path:
                # ASGI: path includes root_path; route on what follows it.
                if not path.startswith(root_path):
                    if "asgi" in scope:
                        return _answer_no_route(scope, receive, send, path)
                    raise ValueError(f"No route found for path {path!r}.")
                path = path[len(root_path) :]
        if self._wraps_routers:
            return self._route_through(scope, receive, send, path, nested)
        for app, rest, args, kwargs, _ in self._resolve(path):
            inner_scope = _inner_scope(scope, rest, args, kwargs)
            return _start(app, inner_scope, receive, send)
        return _no_route(scope, receive, send, path, nested)

    async def _route_through(
        self, scope: Scope, receive: Receive, send: Send, path: str, nested: bool
    ) -> None:
        """Route where some route leads into a router behind other
        applications (middleware): only running it tells whether it matched."""
        for app, rest, args, kwargs, wraps_router in self._resolve(path):
            inner_scope = _inner_scope(scope, rest, args, kwargs)
            if not wraps_router:
                break
            try:
                return await app(inner_scope, receive, send)
            except _NoRouteFound:
                continue
        else:
            return await _no_route(scope, receive, send, path, nested)
        # Awaited after the loop: awaiting inside it would keep the route
        # generator alive (a few hundred bytes) for the connection's lifetime.
        return await _start(app, inner_scope, receive, send)


def _inner_scope(
    scope: Scope, rest: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Scope:
    """The scope a route's application gets: a copy with ``url_route`` (the
    routers' captures outside first) and ``path_remaining``."""
    outer = scope.get("url_route")
    if outer:
        args = tuple(outer.get("args", ())) + args
        kwargs = {**outer.get("kwargs", {}), **kwargs}
    return dict(scope, path_remaining=rest, url_route={"args": args, "kwargs": kwargs})


def _no_route(
    scope: Scope, receive: Receive, send: Send, path: str, nested: bool
) -> Awaitable[None]:
    if nested:
        raise _NoRouteFound(f"No route found for path {path.lstrip('/')!r}.")
    if "asgi" in scope:
        return _answer_no_route(scope, receive, send, path)
    raise ValueError(f"No route found for path {path.lstrip('/')!r}.")


def _start(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    """Start ``app`` for a connection: a ``URLRouter``'s route, or an
    ``as_asgi()`` application's consumer, directly (see ``consumer_factory``)."""
    if type(app).__call__ is URLRouter.__call__:
        return app._route(scope, receive, send)  # type: ignore[attr-defined, no-any-return]
    factory = consumer_factory(app)
    if factory is None:
        return app(scope, receive, send)
    return factory()(scope, receive, send)


async def _answer_no_route(
    scope: Scope, receive: Receive, send: Send, path: str
) -> None:
    """Answer a request that no route matches with a 404 and one WARNING.

    Only for a scope that came from a server: servers put the ASGI version
    in ``scope["asgi"]`` (uvicorn, hypercorn, granian, daphne), while
    communicators and direct calls, as in Channels, get the ``ValueError``
    they can assert on. A WebSocket handshake is refused with a 404 response
    where the server supports ``websocket.http.response``, else with a close
    (which servers answer with 403).
    """
    kind = scope["type"]
    if kind == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left before the handshake
        if _HTTP_RESPONSE_EXTENSION in (scope.get("extensions") or {}):
            status = 404
            await _send_not_found(send, "websocket.http.response")
        else:
            status = 403
            await send({"type": "websocket.close"})
    elif kind == "http":
        status = 404
        await _send_not_found(send, "http.response")
    else:
        raise ValueError(f"No route found for path {path.lstrip('/')!r}.")
    logger.warning(
        "No route found for %s path %r: answered %d", kind, scope.get("path"), status
    )


_HTTP_RESPONSE_EXTENSION = "websocket.http.response"


async def _send_not_found(send: Send, prefix: str) -> None:
    """A plain-text 404 as ``prefix``.start and ``prefix``.body messages."""
    await send(
        {
            "type": f"{prefix}.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": f"{prefix}.body", "body": b"Not Found"})


class ChannelNameRouter:
    """Dispatch ``channel`` scopes (from ``runworker``) by ``scope["channel"]``.

    Raises ``ValueError`` when the scope has no ``channel`` key or no
    application is configured for that channel name.
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]):
        for channel, application in application_mapping.items():
            _check_not_consumer_class(application, f"ChannelNameRouter[{channel!r}]")
        self.application_mapping = application_mapping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "channel" not in scope:
            raise ValueError(
                "ChannelNameRouter got a scope without a 'channel' key. Did you make "
                "sure it's only being used for 'channel' type messages?"
            )
        application = self.application_mapping.get(scope["channel"])
        if application is None:
            raise ValueError(
                f"No application configured for channel name {scope['channel']!r}; "
                f"configured: {', '.join(map(repr, self.application_mapping))}"
            )
        return await application(scope, receive, send)
