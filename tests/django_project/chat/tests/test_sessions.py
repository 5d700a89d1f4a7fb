"""CookieMiddleware and SessionMiddleware, driven by communicators."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.exceptions import SuspiciousOperation
from django.test import SimpleTestCase, TransactionTestCase, override_settings
from django.utils import timezone

from achannels.db import database_sync_to_async
from achannels.sessions import (
    CookieMiddleware,
    InstanceSessionWrapper,
    SessionMiddleware,
    SessionMiddlewareStack,
)
from achannels.testing import HttpCommunicator, WebsocketCommunicator

SessionAction = Callable[[Any], None]


def http_app(
    action: SessionAction | None = None,
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Any:
    """An HTTP app that runs ``action(session)`` in a database thread, then
    responds."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if action is not None:
            await database_sync_to_async(action)(scope["session"])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers if headers is not None else [],
            }
        )
        await send({"type": "http.response.body", "body": b"done"})

    return app


async def respond(app: Any, cookie: str | None = None) -> dict[str, Any]:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    communicator = HttpCommunicator(app, "GET", "/", headers=headers)
    return await communicator.get_response(timeout=5)


def set_cookies(response: dict[str, Any]) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for name, value in response["headers"]:
        if name.lower() == b"set-cookie":
            jar.load(value.decode())
    return jar


def store(**data: Any) -> SessionStore:
    session = SessionStore()
    session.update(data)
    session.save()
    return session


class SessionMiddlewareTests(TransactionTestCase):
    async def test_untouched_session_is_neither_saved_nor_sent(self) -> None:
        response = await respond(SessionMiddlewareStack(http_app()))
        self.assertEqual(len(set_cookies(response)), 0)
        self.assertEqual(await Session.objects.acount(), 0)

    async def test_modified_session_is_saved_on_response_start_with_its_cookie(
        self,
    ) -> None:
        def put(session: Any) -> None:
            session["colour"] = "blue"

        response = await respond(SessionMiddlewareStack(http_app(put)))
        cookie = set_cookies(response)[settings.SESSION_COOKIE_NAME]
        self.assertEqual(
            await database_sync_to_async(
                lambda: SessionStore(cookie.value)["colour"]
            )(),
            "blue",
        )
        self.assertEqual(cookie["max-age"], str(settings.SESSION_COOKIE_AGE))
        self.assertTrue(cookie["expires"])
        self.assertEqual(cookie["path"], "/")
        self.assertEqual(cookie["samesite"], "Lax")
        self.assertTrue(cookie["httponly"])
        self.assertFalse(cookie["secure"])

    @override_settings(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_AGE=60,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_PATH="/app/",
    )
    async def test_session_cookie_follows_session_settings(self) -> None:
        def put(session: Any) -> None:
            session["x"] = 1

        response = await respond(SessionMiddlewareStack(http_app(put)))
        cookie = set_cookies(response)["sid"]
        self.assertEqual(cookie["max-age"], "60")
        self.assertTrue(cookie["secure"])
        self.assertFalse(cookie["httponly"])
        self.assertEqual(cookie["samesite"], "Strict")
        self.assertEqual(cookie["domain"], ".example.com")
        self.assertEqual(cookie["path"], "/app/")

    @override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True)
    async def test_expire_at_browser_close_makes_a_browser_session_cookie(
        self,
    ) -> None:
        def put(session: Any) -> None:
            session["x"] = 1

        response = await respond(SessionMiddlewareStack(http_app(put)))
        cookie = set_cookies(response)[settings.SESSION_COOKIE_NAME]
        self.assertEqual((cookie["max-age"], cookie["expires"]), ("", ""))

    async def test_existing_unmodified_session_is_not_resent(self) -> None:
        session = await database_sync_to_async(store)(visits=1)
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
        response = await respond(SessionMiddlewareStack(http_app()), cookie)
        self.assertEqual(len(set_cookies(response)), 0)

    @override_settings(SESSION_SAVE_EVERY_REQUEST=True)
    async def test_save_every_request_saves_and_resends_unmodified_session(
        self,
    ) -> None:
        session = await database_sync_to_async(store)(visits=1)
        in_an_hour = timezone.now() + datetime.timedelta(hours=1)
        await Session.objects.filter(session_key=session.session_key).aupdate(
            expire_date=in_an_hour
        )
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
        response = await respond(SessionMiddlewareStack(http_app()), cookie)
        sent = set_cookies(response)[settings.SESSION_COOKIE_NAME]
        self.assertEqual(sent.value, session.session_key)
        row = await Session.objects.aget(session_key=session.session_key)
        self.assertGreater(row.expire_date, in_an_hour + datetime.timedelta(days=1))

    async def test_server_error_response_does_not_save_the_session(self) -> None:
        def put(session: Any) -> None:
            session["x"] = 1

        response = await respond(SessionMiddlewareStack(http_app(put, status=500)))
        self.assertEqual(response["status"], 500)
        self.assertEqual(len(set_cookies(response)), 0)
        self.assertEqual(await Session.objects.acount(), 0)

    async def test_flushed_session_has_its_cookie_deleted(self) -> None:
        session = await database_sync_to_async(store)(visits=1)
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"

        def flush(session: Any) -> None:
            session.flush()

        response = await respond(SessionMiddlewareStack(http_app(flush)), cookie)
        deleted = set_cookies(response)[settings.SESSION_COOKIE_NAME]
        self.assertEqual((deleted.value, deleted["max-age"]), ("", "0"))
        self.assertIn("1970", deleted["expires"])
        self.assertEqual(await Session.objects.acount(), 0)

    async def test_session_deleted_during_the_request_raises_suspicious_operation(
        self,
    ) -> None:
        session = await database_sync_to_async(store)(visits=1)
        cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"

        def delete_then_modify(current: Any) -> None:
            current["visits"]  # loaded before another request deletes it
            Session.objects.filter(session_key=session.session_key).delete()
            current["visits"] = 2

        with self.assertRaises(SuspiciousOperation):
            await respond(SessionMiddlewareStack(http_app(delete_then_modify)), cookie)

    async def test_applications_message_and_headers_are_not_modified(self) -> None:
        headers = [(b"content-type", b"text/plain")]

        def put(session: Any) -> None:
            session["x"] = 1

        response = await respond(SessionMiddlewareStack(http_app(put, headers=headers)))
        self.assertEqual(headers, [(b"content-type", b"text/plain")])
        self.assertIn((b"content-type", b"text/plain"), response["headers"])
        self.assertEqual(len(set_cookies(response)), 1)

    async def test_inner_session_middleware_leaves_the_outer_one_in_charge(
        self,
    ) -> None:
        def put(session: Any) -> None:
            session["x"] = 1

        app = SessionMiddlewareStack(SessionMiddleware(http_app(put)))
        response = await respond(app)
        cookies = [v for k, v in response["headers"] if k.lower() == b"set-cookie"]
        self.assertEqual(len(cookies), 1)

    async def test_websocket_accept_saves_the_session_and_sets_its_cookie(
        self,
    ) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()

            def put() -> None:
                scope["session"]["via"] = "websocket"

            await database_sync_to_async(put)()
            await send({"type": "websocket.accept", "headers": [(b"x-a", b"1")]})
            await receive()

        communicator = WebsocketCommunicator(SessionMiddlewareStack(app), "/ws/")
        self.assertEqual(await communicator.connect(timeout=5), (True, None))
        await communicator.disconnect()
        assert communicator.response_headers is not None
        self.assertIn((b"x-a", b"1"), communicator.response_headers)
        jar: SimpleCookie = SimpleCookie()
        for name, value in communicator.response_headers:
            if name == b"Set-Cookie":
                jar.load(value.decode())
        key = jar[settings.SESSION_COOKIE_NAME].value
        stored = await database_sync_to_async(lambda: SessionStore(key)["via"])()
        self.assertEqual(stored, "websocket")

    async def test_websocket_frames_after_accept_do_not_save_the_session(
        self,
    ) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "websocket.accept"})

            def put() -> None:
                scope["session"]["late"] = True

            await database_sync_to_async(put)()
            await send({"type": "websocket.send", "text": "hello"})
            await receive()

        communicator = WebsocketCommunicator(SessionMiddlewareStack(app), "/ws/")
        await communicator.connect(timeout=5)
        self.assertEqual(await communicator.receive_from(timeout=5), "hello")
        await communicator.disconnect()
        self.assertEqual(await Session.objects.acount(), 0)


class SessionMiddlewareSetupTests(SimpleTestCase):
    async def test_session_middleware_needs_cookie_middleware(self) -> None:
        with self.assertRaisesMessage(ValueError, "inside of CookieMiddleware"):
            await respond(SessionMiddleware(http_app()))

    def test_wrapper_passes_an_outer_session_through(self) -> None:
        async def send(message: Any) -> None:
            pass

        outer = object()
        wrapper = InstanceSessionWrapper({"type": "http", "session": outer}, send)
        self.assertFalse(wrapper.activated)
        self.assertIs(wrapper.scope["session"], outer)


class CookieMiddlewareTests(SimpleTestCase):
    async def cookies_seen(self, headers: list[tuple[bytes, bytes]]) -> Any:
        seen: dict[str, Any] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.update(scope["cookies"])
            await send({"type": "http.response.start", "status": 204})
            await send({"type": "http.response.body"})

        await HttpCommunicator(
            CookieMiddleware(app), "GET", "/", headers=headers
        ).get_response()
        return seen

    async def test_cookie_header_is_parsed_like_django(self) -> None:
        seen = await self.cookies_seen([(b"cookie", b'a=1; b="two"; c=x=y')])
        self.assertEqual(seen, {"a": "1", "b": "two", "c": "x=y"})

    async def test_several_cookie_headers_are_read_as_one(self) -> None:
        seen = await self.cookies_seen([(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        self.assertEqual(seen, {"a": "1", "b": "2"})

    async def test_no_cookie_header_gives_empty_cookies(self) -> None:
        self.assertEqual(await self.cookies_seen([]), {})

    async def test_scope_without_headers_raises(self) -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("not reached")

        async def receive() -> Any:
            raise AssertionError("not reached")

        async def send(message: Any) -> None:
            raise AssertionError("not reached")

        with self.assertRaisesMessage(ValueError, "did not have a headers key"):
            await CookieMiddleware(app)({"type": "lifespan"}, receive, send)

    def cookie(self, **kwargs: Any) -> Any:
        message: dict[str, Any] = {"type": "http.response.start"}
        CookieMiddleware.set_cookie(message, "k", **kwargs)
        [(name, value)] = message["headers"]
        self.assertEqual(name, b"Set-Cookie")
        jar: SimpleCookie = SimpleCookie()
        jar.load(value.decode())
        return jar["k"]

    def test_set_cookie_defaults_to_path_root_and_samesite_lax(self) -> None:
        morsel = self.cookie(value="v")
        self.assertEqual(morsel.value, "v")
        self.assertEqual(morsel["path"], "/")
        self.assertEqual(morsel["samesite"], "lax")
        self.assertEqual((morsel["secure"], morsel["httponly"]), ("", ""))
        self.assertEqual((morsel["max-age"], morsel["expires"]), ("", ""))

    def test_set_cookie_max_age_also_sets_expires(self) -> None:
        morsel = self.cookie(max_age=3600)
        self.assertEqual(morsel["max-age"], "3600")
        self.assertTrue(morsel["expires"].endswith("GMT"))
        self.assertEqual(
            self.cookie(max_age=datetime.timedelta(hours=2))["max-age"], "7200"
        )

    def test_set_cookie_expires_datetime_becomes_max_age(self) -> None:
        soon = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(
            seconds=100
        )
        self.assertIn(self.cookie(expires=soon)["max-age"], ("99", "100", "101"))
        naive_utc = soon.replace(tzinfo=None)
        self.assertIn(self.cookie(expires=naive_utc)["max-age"], ("99", "100", "101"))
        past = datetime.datetime(2000, 1, 1)
        self.assertEqual(self.cookie(expires=past)["max-age"], "0")

    def test_set_cookie_expires_string_is_kept(self) -> None:
        morsel = self.cookie(expires="Wed, 21 Oct 2037 07:28:00 GMT")
        self.assertEqual(morsel["expires"], "Wed, 21 Oct 2037 07:28:00 GMT")

    def test_set_cookie_flags_domain_and_path(self) -> None:
        morsel = self.cookie(
            secure=True,
            httponly=True,
            domain=".example.com",
            path="/a/",
            samesite="None",
        )
        self.assertTrue(morsel["secure"])
        self.assertTrue(morsel["httponly"])
        self.assertEqual(morsel["domain"], ".example.com")
        self.assertEqual(morsel["path"], "/a/")
        self.assertEqual(morsel["samesite"], "None")
        self.assertEqual(self.cookie(samesite=None)["samesite"], "")
        self.assertEqual(self.cookie(path=None)["path"], "")

    def test_set_cookie_rejects_bad_samesite_and_double_expiry(self) -> None:
        with self.assertRaisesMessage(ValueError, "samesite must be"):
            self.cookie(samesite="sometimes")
        # Channels asserts here: code and tests written for it catch this.
        with self.assertRaises(AssertionError):
            self.cookie(samesite="Hello")
        # The empty string is not "no attribute" (None is): Channels asserts.
        with self.assertRaisesMessage(AssertionError, "samesite must be"):
            self.cookie(samesite="")
        with self.assertRaisesMessage(ValueError, "can't be used together"):
            self.cookie(expires=datetime.datetime(2030, 1, 1), max_age=5)

    def test_delete_cookie_expires_it_now(self) -> None:
        message: dict[str, Any] = {"type": "http.response.start"}
        CookieMiddleware.delete_cookie(message, "k", path="/p/", domain="example.com")
        jar: SimpleCookie = SimpleCookie()
        jar.load(message["headers"][0][1].decode())
        self.assertEqual(jar["k"].value, "")
        self.assertEqual(jar["k"]["max-age"], "0")
        self.assertIn("1970", jar["k"]["expires"])
        self.assertEqual((jar["k"]["path"], jar["k"]["domain"]), ("/p/", "example.com"))

    def test_set_cookie_appends_to_the_messages_header_list(self) -> None:
        headers = [(b"content-type", b"text/plain")]
        message = {"type": "http.response.start", "headers": headers}
        CookieMiddleware.set_cookie(message, "a", "1")
        self.assertIs(message["headers"], headers)
        self.assertEqual(len(headers), 2)
        frozen = {"type": "http.response.start", "headers": ((b"x", b"y"),)}
        CookieMiddleware.set_cookie(frozen, "a", "1")
        self.assertEqual(len(frozen["headers"]), 2)
