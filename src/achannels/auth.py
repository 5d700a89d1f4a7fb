"""Django authentication for consumers: ``scope["user"]`` from the session.

Django only. ``AuthMiddleware`` fills ``scope["user"]`` from the session that
``SessionMiddleware`` put in the scope; ``login()`` and ``logout()`` change
it the way ``django.contrib.auth.login``/``logout`` change a request.
``scope["user"]`` only ever comes from the server-side session (or from a
middleware outside this one), never from anything the client sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_in,
    user_logged_out,
)
from django.utils.crypto import constant_time_compare
from django.utils.functional import LazyObject, empty

from ._types import ASGIApp, Receive, Scope, Send
from .db import database_sync_to_async
from .middleware import BaseMiddleware
from .sessions import CookieMiddleware, SessionMiddleware

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

__all__ = ["AuthMiddleware", "AuthMiddlewareStack", "get_user", "login", "logout"]


def _session_of(scope: Scope) -> Any:
    try:
        return scope["session"]
    except KeyError:
        raise ValueError(
            "Cannot find session in scope. You should wrap your consumer in "
            "SessionMiddleware."
        ) from None


def _user_id_in(session: Any) -> Any:
    # The session stores the primary key as a string; turn it back into the
    # user model's key type so comparisons with ``user.pk`` work.
    return get_user_model()._meta.pk.to_python(session[SESSION_KEY])


def _session_hash_verified(session: Any, user: Any) -> bool:
    # As django.contrib.auth.get_user: the stored hash must match the
    # user's current one (a password change logs out other sessions); a hash
    # made with a key in SECRET_KEY_FALLBACKS is accepted once and upgraded.
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    current_hash = user.get_session_auth_hash()
    if constant_time_compare(session_hash, current_hash):
        return True
    fallback_hashes = getattr(user, "get_session_auth_fallback_hash", None)
    if fallback_hashes is not None and any(
        constant_time_compare(session_hash, fallback) for fallback in fallback_hashes()
    ):
        session.cycle_key()
        session[HASH_SESSION_KEY] = current_hash
        return True
    return False


@database_sync_to_async
def get_user(scope: Scope) -> AbstractBaseUser | AnonymousUser:
    """Return the user logged in to ``scope["session"]``, or an
    ``AnonymousUser``.

    The user must still exist, use a backend listed in
    ``AUTHENTICATION_BACKENDS``, and match the session's auth hash (a
    changed password or ``SECRET_KEY`` invalidates it; a hash from
    ``SECRET_KEY_FALLBACKS`` is accepted and upgraded); otherwise the session
    is flushed and the user is anonymous. Raises ``ValueError`` when the
    scope has no session. Awaitable; runs in a database thread.
    """
    from django.contrib.auth.models import AnonymousUser

    session = _session_of(scope)
    user = None
    try:
        user_id = _user_id_in(session)
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        pass
    else:
        if backend_path in settings.AUTHENTICATION_BACKENDS:
            user = load_backend(backend_path).get_user(user_id)
            if hasattr(user, "get_session_auth_hash") and not _session_hash_verified(
                session, user
            ):
                session.flush()
                user = None
    return user or AnonymousUser()


@database_sync_to_async
def login(scope: Scope, user: Any, backend: str | None = None) -> None:
    """Log ``user`` in to the connection's session and set ``scope["user"]``.

    As ``django.contrib.auth.login``: the session key is rotated (or the
    session flushed when it belonged to another user) and
    ``user_logged_in`` is sent (with ``request=None``). ``user=None`` means
    ``scope["user"]``. ``backend`` defaults to ``user.backend`` (set by
    ``authenticate()``) or the only configured backend.

    The session is saved when the response starts: for a WebSocket, call
    ``login()`` before ``accept()`` and the new session cookie rides on the
    handshake response; after ``accept()`` save it yourself
    (``await database_sync_to_async(scope["session"].save)()``), though the
    browser keeps its old cookie. Raises ``ValueError`` without a session,
    without a user, or when the backend cannot be chosen; ``TypeError``
    when ``backend`` is not a dotted path string. Awaitable.
    """
    session = _session_of(scope)
    if user is None:
        user = scope.get("user")
    if user is None:
        raise ValueError(
            "User must be passed as an argument or must be present in the scope."
        )
    session_auth_hash = ""
    if hasattr(user, "get_session_auth_hash"):
        session_auth_hash = user.get_session_auth_hash()
    if SESSION_KEY in session:
        if _user_id_in(session) != user.pk or (
            session_auth_hash
            and not constant_time_compare(
                session.get(HASH_SESSION_KEY, ""), session_auth_hash
            )
        ):
            # Never reuse a session that belonged to somebody else.
            session.flush()
    else:
        # A new key on login defeats session fixation.
        session.cycle_key()
    backend = backend or getattr(user, "backend", None)
    if backend is None:
        backends = list(settings.AUTHENTICATION_BACKENDS)
        if len(backends) != 1:
            raise ValueError(
                f"You have {len(backends)} authentication backends configured and "
                "therefore must provide the `backend` argument or set the "
                "`backend` attribute on the user."
            )
        backend = backends[0]
    if not isinstance(backend, str):
        raise TypeError(
            f"backend must be a dotted import path string (got {backend!r})."
        )
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = session_auth_hash
    scope["user"] = user
    # Like Channels, there is no request to hand the receivers (nor a CSRF
    # token to rotate).
    user_logged_in.send(sender=user.__class__, request=None, user=user)


@database_sync_to_async
def logout(scope: Scope) -> None:
    """Log the connection's user out: send ``user_logged_out`` (for an
    authenticated user, ``request=None``), flush the session (its data goes,
    its key changes) and set ``scope["user"]`` to ``AnonymousUser`` if the
    scope has a user. Raises ``ValueError`` without a session. Awaitable.
    """
    from django.contrib.auth.models import AnonymousUser

    session = _session_of(scope)
    user = scope.get("user")
    if user is not None and not getattr(user, "is_authenticated", True):
        user = None
    # Receivers run before the flush so they can still see who left.
    if user is not None:
        user_logged_out.send(sender=user.__class__, request=None, user=user)
    session.flush()
    if "user" in scope:
        scope["user"] = AnonymousUser()


class UserLazyObject(LazyObject):  # type: ignore[type-arg]
    """``scope["user"]`` until ``AuthMiddleware`` has resolved it; touching
    it earlier raises ``ValueError``."""

    def _setup(self) -> None:
        raise ValueError("Accessing scope user before it is ready.")


class AuthMiddleware(BaseMiddleware):
    """Put the session's user in ``scope["user"]`` (see ``get_user``).

    Needs ``SessionMiddleware`` outside it (``ValueError`` otherwise); use
    ``AuthMiddlewareStack`` for the three together. A ``scope["user"]`` set
    by a middleware further out is kept.
    """

    def populate_scope(self, scope: Scope) -> None:
        """Check the scope has a session and add a placeholder user."""
        if "session" not in scope:
            raise ValueError(
                "AuthMiddleware cannot find session in scope. SessionMiddleware "
                "must be above it."
            )
        if "user" not in scope:
            scope["user"] = UserLazyObject()

    async def resolve_scope(self, scope: Scope) -> None:
        """Load the user behind the placeholder from the session."""
        user = scope["user"]
        if not isinstance(user, UserLazyObject) or user._wrapped is not empty:
            return
        if getattr(scope["session"], "session_key", None) is None:
            # No session cookie: a new, empty session, so nobody is logged
            # in; skip the database thread hop get_user() would cost.
            from django.contrib.auth.models import AnonymousUser

            user._wrapped = AnonymousUser()
        else:
            user._wrapped = await get_user(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        self.populate_scope(scope)
        await self.resolve_scope(scope)
        return await self.inner(scope, receive, send)


def AuthMiddlewareStack(inner: ASGIApp) -> ASGIApp:
    """Return ``inner`` wrapped in cookie, session and auth middleware:
    ``CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))``."""
    return CookieMiddleware(SessionMiddleware(AuthMiddleware(inner)))
