"""get_user, login, logout and AuthMiddleware against the real auth models."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    user_logged_in,
    user_logged_out,
)
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from achannels.auth import (
    AuthMiddleware,
    AuthMiddlewareStack,
    UserLazyObject,
    get_user,
    login,
    logout,
)
from achannels.db import database_sync_to_async
from achannels.testing import WebsocketCommunicator

User = get_user_model()
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def make_user(name: str = "alice") -> Any:
    return User.objects.create_user(name, password="wonderland")


def logged_in_session(user: Any) -> SessionStore:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = MODEL_BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return session


def call(func: Any, *args: Any) -> Any:
    """Run the awaitable helper ``func(*args)`` from a sync test."""
    return async_to_sync(func)(*args)


class Signals:
    """Records user_logged_in/out while used as a context manager."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []

    def _in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        self.events.append(("in", request, user))

    def _out(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        self.events.append(("out", request, user))

    def __enter__(self) -> Signals:
        user_logged_in.connect(self._in)
        user_logged_out.connect(self._out)
        return self

    def __exit__(self, *exc: object) -> None:
        user_logged_in.disconnect(self._in)
        user_logged_out.disconnect(self._out)


class GetUserTests(TransactionTestCase):
    def test_scope_without_session_raises(self) -> None:
        with self.assertRaisesMessage(ValueError, "Cannot find session in scope"):
            call(get_user, {})

    def test_empty_session_is_anonymous(self) -> None:
        user = call(get_user, {"session": SessionStore()})
        self.assertIsInstance(user, AnonymousUser)

    def test_logged_in_session_gives_the_user(self) -> None:
        alice = make_user()
        session = SessionStore(logged_in_session(alice).session_key)
        self.assertEqual(call(get_user, {"session": session}), alice)

    def test_session_from_the_test_client_gives_the_user(self) -> None:
        alice = make_user()
        self.assertTrue(self.client.login(username="alice", password="wonderland"))
        key = self.client.cookies[settings.SESSION_COOKIE_NAME].value
        scope = {"session": SessionStore(key)}
        self.assertEqual(call(get_user, scope), alice)

    def test_changed_password_flushes_the_session(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        alice.set_password("changed")
        alice.save()
        session = SessionStore(session.session_key)
        user = call(get_user, {"session": session})
        self.assertIsInstance(user, AnonymousUser)
        self.assertNotIn(SESSION_KEY, session)
        self.assertIsNone(session.session_key)

    def test_missing_hash_is_not_verified(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        del session[HASH_SESSION_KEY]
        user = call(get_user, {"session": session})
        self.assertIsInstance(user, AnonymousUser)

    def test_hash_from_a_fallback_secret_key_is_accepted_and_upgraded(self) -> None:
        alice = make_user()
        with override_settings(SECRET_KEY="the old key"):
            session = logged_in_session(alice)
            old_hash = session[HASH_SESSION_KEY]
        old_key = session.session_key
        with override_settings(SECRET_KEY_FALLBACKS=["the old key"]):
            user = call(get_user, {"session": session})
            self.assertEqual(user, alice)
            self.assertEqual(session[HASH_SESSION_KEY], alice.get_session_auth_hash())
        self.assertNotEqual(session[HASH_SESSION_KEY], old_hash)
        self.assertNotEqual(session.session_key, old_key)

    def test_backend_not_configured_any_more_is_anonymous(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        session[BACKEND_SESSION_KEY] = "somewhere.else.Backend"
        user = call(get_user, {"session": session})
        self.assertIsInstance(user, AnonymousUser)

    def test_deleted_user_is_anonymous(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        alice.delete()
        user = call(get_user, {"session": session})
        self.assertIsInstance(user, AnonymousUser)


class LoginLogoutTests(TransactionTestCase):
    def test_login_rotates_the_key_of_an_anonymous_session_and_keeps_its_data(
        self,
    ) -> None:
        alice = make_user()
        session = SessionStore()
        session["cart"] = ["book"]
        session.save()
        old_key = session.session_key
        scope: dict[str, Any] = {"session": session}
        with Signals() as signals:
            call(login, scope, alice)
        self.assertNotEqual(session.session_key, old_key)
        self.assertFalse(SessionStore().exists(str(old_key)))
        self.assertEqual(session["cart"], ["book"])
        self.assertEqual(session[SESSION_KEY], str(alice.pk))
        self.assertEqual(session[BACKEND_SESSION_KEY], MODEL_BACKEND)
        self.assertEqual(session[HASH_SESSION_KEY], alice.get_session_auth_hash())
        self.assertIs(scope["user"], alice)
        self.assertEqual(signals.events, [("in", None, alice)])

    def test_login_over_another_users_session_flushes_it(self) -> None:
        alice, bob = make_user("alice"), make_user("bob")
        session = logged_in_session(alice)
        session["alice's secret"] = 1
        old_key = session.session_key
        call(login, {"session": session}, bob)
        self.assertNotIn("alice's secret", session)
        self.assertNotEqual(session.session_key, old_key)
        self.assertEqual(session[SESSION_KEY], str(bob.pk))

    def test_login_again_as_the_same_user_keeps_the_session(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        key = session.session_key
        call(login, {"session": session}, alice)
        self.assertEqual(session.session_key, key)

    def test_login_then_save_is_what_get_user_sees_later(self) -> None:
        alice = make_user()
        session = SessionStore()
        call(login, {"session": session}, alice)
        session.save()
        later = {"session": SessionStore(session.session_key)}
        self.assertEqual(call(get_user, later), alice)

    def test_login_without_user_uses_scope_user_or_raises(self) -> None:
        alice = make_user()
        session = SessionStore()
        call(login, {"session": session, "user": alice}, None)
        self.assertEqual(session[SESSION_KEY], str(alice.pk))
        with self.assertRaisesMessage(ValueError, "User must be passed"):
            call(login, {"session": SessionStore()}, None)

    @override_settings(
        AUTHENTICATION_BACKENDS=[
            MODEL_BACKEND,
            "django.contrib.auth.backends.RemoteUserBackend",
        ]
    )
    def test_login_needs_a_backend_when_several_are_configured(self) -> None:
        alice = make_user()
        with self.assertRaisesMessage(ValueError, "must provide the `backend`"):
            call(login, {"session": SessionStore()}, alice)
        session = SessionStore()
        call(login, {"session": session}, alice, MODEL_BACKEND)
        self.assertEqual(session[BACKEND_SESSION_KEY], MODEL_BACKEND)
        alice.backend = "django.contrib.auth.backends.RemoteUserBackend"
        call(login, {"session": session}, alice)
        self.assertEqual(session[BACKEND_SESSION_KEY], alice.backend)

    def test_login_rejects_a_backend_that_is_not_a_path(self) -> None:
        alice = make_user()
        with self.assertRaisesMessage(TypeError, "dotted import path string"):
            call(login, {"session": SessionStore()}, alice, 42)

    def test_logout_flushes_the_session_and_signals(self) -> None:
        alice = make_user()
        session = logged_in_session(alice)
        old_key = session.session_key
        scope: dict[str, Any] = {"session": session, "user": alice}
        with Signals() as signals:
            call(logout, scope)
        self.assertEqual(signals.events, [("out", None, alice)])
        self.assertIsInstance(scope["user"], AnonymousUser)
        self.assertIsNone(session.session_key)
        self.assertFalse(SessionStore().exists(str(old_key)))

    def test_logout_of_an_anonymous_user_sends_no_signal(self) -> None:
        scope: dict[str, Any] = {"session": SessionStore(), "user": AnonymousUser()}
        with Signals() as signals:
            call(logout, scope)
        self.assertEqual(signals.events, [])
        with self.assertRaisesMessage(ValueError, "Cannot find session in scope"):
            call(logout, {})


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    user = scope["user"]
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": str(user.get_username() or "-")})
    await receive()


class AuthMiddlewareTests(TransactionTestCase):
    async def name_seen(self, app: Any, headers: list[tuple[bytes, bytes]]) -> str:
        communicator = WebsocketCommunicator(app, "/ws/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        self.assertTrue(connected)
        text = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return str(text)

    async def test_stack_puts_the_session_user_in_scope(self) -> None:
        alice = await database_sync_to_async(make_user)()
        session = await database_sync_to_async(logged_in_session)(alice)
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()
        name = await self.name_seen(AuthMiddlewareStack(whoami), [(b"cookie", cookie)])
        self.assertEqual(name, "alice")

    async def test_headers_and_cookies_cannot_set_the_user(self) -> None:
        alice = await database_sync_to_async(make_user)()
        headers = [
            (b"user", b"alice"),
            (b"x-user", b"alice"),
            (b"cookie", f"user=alice; {SESSION_KEY}={alice.pk}".encode()),
        ]
        self.assertEqual(
            await self.name_seen(AuthMiddlewareStack(whoami), headers), "-"
        )

    async def test_user_set_by_an_outer_middleware_is_kept(self) -> None:
        alice = await database_sync_to_async(make_user)()

        async def outer(scope: Any, receive: Any, send: Any) -> None:
            await AuthMiddlewareStack(whoami)(dict(scope, user=alice), receive, send)

        self.assertEqual(await self.name_seen(outer, []), "alice")


class AuthMiddlewareSetupTests(SimpleTestCase):
    async def test_auth_middleware_needs_a_session(self) -> None:
        communicator = WebsocketCommunicator(AuthMiddleware(whoami), "/ws/")
        with self.assertRaisesMessage(ValueError, "SessionMiddleware must be above it"):
            await communicator.connect(timeout=5)

    def test_unresolved_user_raises_when_touched(self) -> None:
        with self.assertRaisesMessage(ValueError, "before it is ready"):
            UserLazyObject().is_authenticated  # noqa: B018
