"""Cookies and Django sessions in the scope of HTTP and WebSocket connections.

Django only. ``CookieMiddleware`` parses the ``Cookie`` header into
``scope["cookies"]``; ``SessionMiddleware`` puts a Django session (from the
session cookie) in ``scope["session"]`` and saves it when a response starts;
``SessionMiddlewareStack`` is both together.
"""

from __future__ import annotations

import datetime
import time
from http.cookies import SimpleCookie
from importlib import import_module
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.exceptions import SuspiciousOperation
from django.http import parse_cookie
from django.utils.encoding import force_str
from django.utils.functional import LazyObject
from django.utils.http import http_date

from ._errors import InvalidSameSite
from ._types import ASGIApp, Message, Receive, Scope, Send
from .db import database_sync_to_async

__all__ = [
    "CookieMiddleware",
    "InstanceSessionWrapper",
    "SessionMiddleware",
    "SessionMiddlewareStack",
]

_SAMESITE_VALUES = ("lax", "none", "strict")


class CookieMiddleware:
    """Put the request's cookies in ``scope["cookies"]`` (a ``dict`` of
    ``str`` to ``str``, parsed like Django's ``request.COOKIES``).

    Works on any scope with ``headers`` (HTTP and WebSocket); raises
    ``ValueError`` for a scope without them. Several ``Cookie`` headers (as
    HTTP/2 clients send) are read as one, like Django does.
    """

    def __init__(self, inner: ASGIApp):
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "headers" not in scope:
            raise ValueError(
                "CookieMiddleware was passed a scope that did not have a headers "
                "key (make sure it is only passed HTTP or WebSocket connections)"
            )
        values = [value for name, value in scope["headers"] if name == b"cookie"]
        cookies = parse_cookie("; ".join(v.decode("latin1") for v in values))
        return await self.inner(dict(scope, cookies=cookies), receive, send)

    @classmethod
    def set_cookie(
        cls,
        message: Message,
        key: str,
        value: Any = "",
        max_age: int | float | datetime.timedelta | None = None,
        expires: str | datetime.datetime | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool | None = False,
        httponly: bool | None = False,
        samesite: str | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header to ``message`` (an
        ``http.response.start`` or ``websocket.accept`` event), in place.

        ``expires`` is an HTTP date string or a ``datetime`` (naive means
        UTC); a ``datetime`` is turned into ``max_age`` as Django does.
        ``samesite`` is ``"lax"`` (the default), ``"strict"``, ``"none"`` or
        ``None``/``False`` for no attribute. Raises ``ValueError`` (also an
        ``AssertionError``, as Channels asserts) for another ``samesite``
        value, and ``ValueError`` for both a ``datetime`` ``expires`` and
        ``max_age``.
        """
        cookies: SimpleCookie = SimpleCookie()
        cookies[key] = force_str(value)
        morsel = cookies[key]
        if isinstance(expires, datetime.datetime):
            if max_age is not None:
                raise ValueError("'expires' and 'max_age' can't be used together.")
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=datetime.timezone.utc)
            delta = expires - datetime.datetime.now(tz=datetime.timezone.utc)
            # The fraction of a second lost when the date is formatted would
            # make the cookie expire a second early.
            delta += datetime.timedelta(seconds=1)
            max_age = max(0, delta.days * 86400 + delta.seconds)
            expires = None
        if expires:
            morsel["expires"] = expires
        if max_age is not None:
            if isinstance(max_age, datetime.timedelta):
                max_age = max_age.total_seconds()
            max_age = int(max_age)
            morsel["max-age"] = str(max_age)
            # Old browsers only understand Expires; send both.
            if not expires:
                morsel["expires"] = http_date(time.time() + max_age)
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        # Only None (and False) mean "no attribute": Channels asserts on
        # any other value outside lax/strict/none, the empty string included.
        if isinstance(samesite, str):
            if samesite.lower() not in _SAMESITE_VALUES:
                raise InvalidSameSite(
                    f'samesite must be "lax", "none", or "strict", not {samesite!r}'
                )
            morsel["samesite"] = samesite
        header = (b"Set-Cookie", morsel.OutputString().encode("utf-8"))
        headers = message.get("headers")
        if isinstance(headers, list):
            headers.append(header)
        else:
            message["headers"] = [*(headers or ()), header]

    @classmethod
    def delete_cookie(
        cls,
        message: Message,
        key: str,
        path: str | None = "/",
        domain: str | None = None,
    ) -> None:
        """Add a ``Set-Cookie`` header to ``message`` that makes the browser
        drop cookie ``key`` (set for ``path`` and ``domain``)."""
        cls.set_cookie(
            message,
            key,
            max_age=0,
            path=path,
            domain=domain,
            expires="Thu, 01 Jan 1970 00:00:00 GMT",
        )


class InstanceSessionWrapper:
    """The per-connection part of ``SessionMiddleware``.

    ``scope`` is a copy of the connection scope with ``scope["session"]`` (a
    lazy proxy to the ``SESSION_ENGINE`` store, filled by
    ``resolve_session()``; the store reads its data on first access).
    ``send`` saves a modified session (every time with
    ``SESSION_SAVE_EVERY_REQUEST``) as the response starts and sets the
    session cookie on that event; an emptied session has its cookie deleted.
    Responses with a status of 500 or more are not saved, as in Django.

    Unlike Channels, ``websocket.accept`` counts as a response start too: a
    consumer that calls ``login()`` before ``accept()`` gets the session
    saved and the rotated session cookie set on the handshake response, so
    the login survives a reconnect. A session above this one (another
    ``SessionMiddleware`` outside) is passed through untouched.
    """

    #: Events on which a modified session is saved.
    save_message_types: ClassVar[list[str]] = [
        "http.response.start",
        "websocket.accept",
    ]
    #: Events that can carry the session cookie back to the client.
    cookie_response_message_types: ClassVar[list[str]] = [
        "http.response.start",
        "websocket.accept",
    ]

    def __init__(self, scope: Scope, send: Send):
        self.cookie_name: str = settings.SESSION_COOKIE_NAME
        self.session_store: type[SessionBase] = import_module(
            settings.SESSION_ENGINE
        ).SessionStore
        self.scope: dict[str, Any] = dict(scope)
        self.activated = "session" not in self.scope
        if self.activated:
            if "cookies" not in self.scope:
                raise ValueError(
                    "No cookies in scope - SessionMiddleware needs to run inside "
                    "of CookieMiddleware."
                )
            self.scope["session"] = LazyObject()
        self.real_send = send

    async def resolve_session(self) -> None:
        """Attach the session named by the request's session cookie (a new,
        empty one without a cookie). Reads nothing from the store yet."""
        if self.activated:
            session_key = self.scope["cookies"].get(self.cookie_name)
            self.scope["session"]._wrapped = self.session_store(session_key)

    async def send(self, message: Message) -> None:
        """Save the session and set or delete its cookie if ``message``
        starts a response, then pass ``message`` on. ``message`` itself is
        never modified: the cookie goes on a copy."""
        if self.activated and message["type"] in self.save_message_types:
            message = await self._save_for_response(message)
        await self.real_send(message)

    async def _save_for_response(self, message: Message) -> Message:
        session = self.scope["session"]
        carries_cookie = message["type"] in self.cookie_response_message_types
        # Copy so the caller's dict and header list never gain our cookie.
        message = dict(message, headers=list(message.get("headers") or ()))
        empty = session.is_empty()
        if empty:
            if carries_cookie and self.cookie_name in self.scope["cookies"]:
                CookieMiddleware.delete_cookie(
                    message,
                    self.cookie_name,
                    path=settings.SESSION_COOKIE_PATH,
                    domain=settings.SESSION_COOKIE_DOMAIN,
                )
            return message
        if not (session.modified or settings.SESSION_SAVE_EVERY_REQUEST):
            return message
        if message.get("status", 200) >= 500:
            return message
        # Save first: it loads the data the expiry below is read from, in a
        # database thread rather than on the event loop.
        await self.save_session()
        if carries_cookie:
            if session.get_expire_at_browser_close():
                max_age: int | None = None
                expires: str | None = None
            else:
                max_age = session.get_expiry_age()
                expires = http_date(time.time() + max_age)
            CookieMiddleware.set_cookie(
                message,
                self.cookie_name,
                session.session_key,
                max_age=max_age,
                expires=expires,
                domain=settings.SESSION_COOKIE_DOMAIN,
                path=settings.SESSION_COOKIE_PATH,
                secure=settings.SESSION_COOKIE_SECURE or None,
                httponly=settings.SESSION_COOKIE_HTTPONLY or None,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
        return message

    async def save_session(self) -> None:
        """Save the session in a database thread.

        Raises ``SuspiciousOperation`` when the session was deleted while
        the connection ran (logged out elsewhere, for example).
        """
        try:
            await database_sync_to_async(self.scope["session"].save)()
        except UpdateError:
            raise SuspiciousOperation(
                "The request's session was deleted before the request completed. "
                "The user may have logged out in a concurrent request, for example."
            ) from None


class SessionMiddleware:
    """Put a Django session in ``scope["session"]`` for HTTP and WebSocket
    connections; see ``InstanceSessionWrapper`` for when it is saved.

    Needs ``CookieMiddleware`` outside it (``ValueError`` otherwise); use
    ``SessionMiddlewareStack`` for both.
    """

    def __init__(self, inner: ASGIApp):
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, wrapper.send)


def SessionMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Return ``inner`` wrapped in ``CookieMiddleware(SessionMiddleware(...))``."""
    return CookieMiddleware(SessionMiddleware(inner))
