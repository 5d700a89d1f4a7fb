"""The base class for ASGI middleware that wraps an application."""

from __future__ import annotations

from ._types import ASGIApp, Receive, Scope, Send

__all__ = ["BaseMiddleware"]


class BaseMiddleware:
    """Wrap ``inner``; subclasses override ``__call__`` to add to the scope.

    One instance serves every connection, so keep per-connection state in the
    scope, never on ``self``. ``__call__`` hands ``inner`` a shallow copy of the
    scope so keys added below never leak to the server or to sibling routes,
    then returns what ``inner`` returns and lets its exceptions propagate.
    """

    def __init__(self, inner: ASGIApp):
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Copy so that what this (or an inner) layer adds stays downstream.
        scope = dict(scope)
        return await self.inner(scope, receive, send)
