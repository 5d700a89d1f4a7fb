"""End to end through a real uvicorn process: ChannelsLiveServerTestCase."""

from __future__ import annotations

import urllib.request
from typing import Any

from asgiref.sync import async_to_sync
from chat.models import Note
from chat.tests.helpers import (
    DEADLINE,
    cookie_values,
    ws_first_json,
    ws_handshake_status,
)
from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.test import override_settings

from achannels.testing import ChannelsLiveServerTestCase

User = get_user_model()
ANONYMOUS = {"user": None, "authenticated": False}
ALICE = {"user": "alice", "authenticated": True}


class LiveServerTests(ChannelsLiveServerTestCase):
    def setUp(self) -> None:
        self.user = User.objects.create_user("alice", password="wonderland")

    # Helpers

    @property
    def origin(self) -> str:
        return self.live_server_url

    def ws(self, path: str, **kwargs: Any) -> tuple[Any, list[str]]:
        kwargs.setdefault("origin", self.origin)
        return async_to_sync(ws_first_json)(self.live_server_ws_url + path, **kwargs)

    def session_cookie_of_test_client(self) -> dict[str, str]:
        self.assertTrue(self.client.login(username="alice", password="wonderland"))
        name = settings.SESSION_COOKIE_NAME
        return {name: self.client.cookies[name].value}

    def http_get(self, path: str, cookies: dict[str, str] | None = None) -> str:
        request = urllib.request.Request(self.live_server_url + path)
        if cookies:
            request.add_header(
                "Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())
            )
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            body: bytes = response.read()
            return body.decode()

    # Tests

    def test_live_server_urls_point_at_uvicorn_on_localhost(self) -> None:
        self.assertRegex(self.live_server_url, r"^http://localhost:\d+$")
        self.assertRegex(self.live_server_ws_url, r"^ws://localhost:\d+$")
        self.assertEqual(self.http_get("/"), "testproject index v1")

    def test_anonymous_user_is_anonymous_in_scope(self) -> None:
        reply, set_cookies = self.ws("/ws/whoami/")
        self.assertEqual(reply, ANONYMOUS)
        self.assertEqual(set_cookies, [])

    def test_user_logged_in_by_test_client_is_seen_through_session_cookie(
        self,
    ) -> None:
        cookies = self.session_cookie_of_test_client()
        reply, _ = self.ws("/ws/whoami/", cookies=cookies)
        self.assertEqual(reply, ALICE)
        self.assertEqual(self.http_get("/whoami/", cookies), "alice")

    def test_client_headers_cannot_set_scope_user(self) -> None:
        reply, _ = self.ws(
            "/ws/whoami/",
            cookies={"user": "alice", "_auth_user_id": str(self.user.pk)},
            headers=[("User", "alice"), ("X-User", "alice"), ("Remote-User", "alice")],
        )
        self.assertEqual(reply, ANONYMOUS)

    def test_login_in_consumer_persists_across_reconnect(self) -> None:
        reply, set_cookies = self.ws("/ws/login/?username=alice&password=wonderland")
        self.assertEqual(reply, ALICE)
        session_cookie = cookie_values(set_cookies)[settings.SESSION_COOKIE_NAME]
        self.assertTrue(session_cookie["httponly"])
        self.assertEqual(session_cookie["samesite"], "Lax")
        cookies = {settings.SESSION_COOKIE_NAME: session_cookie.value}
        reply, _ = self.ws("/ws/whoami/", cookies=cookies)
        self.assertEqual(reply, ALICE)
        self.assertEqual(self.http_get("/whoami/", cookies), "alice")

    def test_login_in_consumer_rotates_an_existing_session_key(self) -> None:
        name = settings.SESSION_COOKIE_NAME
        self.assertEqual(self.client.get("/visit/").content, b"visits 1")
        anonymous_key = self.client.cookies[name].value
        reply, set_cookies = self.ws(
            "/ws/login/?username=alice&password=wonderland",
            cookies={name: anonymous_key},
        )
        self.assertEqual(reply, ALICE)
        new_key = cookie_values(set_cookies)[name].value
        self.assertNotEqual(new_key, anonymous_key)
        # The anonymous session's data came along; its old key is dead.
        self.assertEqual(SessionStore(new_key)["visits"], 1)
        self.assertEqual(
            self.ws("/ws/whoami/", cookies={name: anonymous_key})[0], ANONYMOUS
        )
        self.assertEqual(self.ws("/ws/whoami/", cookies={name: new_key})[0], ALICE)

    def test_failed_login_in_consumer_sets_no_cookie(self) -> None:
        reply, set_cookies = self.ws("/ws/login/?username=alice&password=wrong")
        self.assertEqual(reply, ANONYMOUS)
        self.assertEqual(set_cookies, [])

    def test_logout_in_consumer_ends_the_session_and_deletes_its_cookie(self) -> None:
        cookies = self.session_cookie_of_test_client()
        reply, set_cookies = self.ws("/ws/logout/", cookies=cookies)
        self.assertEqual(reply, ANONYMOUS)
        deleted = cookie_values(set_cookies)[settings.SESSION_COOKIE_NAME]
        self.assertEqual((deleted.value, deleted["max-age"]), ("", "0"))
        self.assertEqual(self.ws("/ws/whoami/", cookies=cookies)[0], ANONYMOUS)

    def test_password_change_logs_websocket_sessions_out(self) -> None:
        cookies = self.session_cookie_of_test_client()
        self.user.set_password("new password")
        self.user.save()
        self.assertEqual(self.ws("/ws/whoami/", cookies=cookies)[0], ANONYMOUS)

    def test_session_data_signed_with_another_secret_key_is_ignored(self) -> None:
        with override_settings(SECRET_KEY="another secret key entirely"):
            forged = SessionStore()
            forged[SESSION_KEY] = str(self.user.pk)
            forged["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
            forged["_auth_user_hash"] = self.user.get_session_auth_hash()
            forged.save()
        cookies = {settings.SESSION_COOKIE_NAME: str(forged.session_key)}
        self.assertEqual(self.ws("/ws/whoami/", cookies=cookies)[0], ANONYMOUS)

    def test_foreign_origin_is_denied_and_allowed_origin_accepted(self) -> None:
        url = self.live_server_ws_url + "/ws/echo/"
        status = async_to_sync(ws_handshake_status)
        self.assertEqual(status(url, origin="http://evil.example"), 403)
        self.assertEqual(status(url, origin="http://localhost.evil.example"), 403)
        self.assertEqual(status(url, origin="null"), 403)
        self.assertEqual(status(url, origin=None), 403)
        self.assertEqual(status(url, origin=self.live_server_url), 101)
        self.assertEqual(status(url, origin="https://127.0.0.1"), 101)

    def test_sync_consumer_reads_and_writes_models(self) -> None:
        Note.objects.create(text="written by the test")
        cookies = self.session_cookie_of_test_client()
        reply, _ = self.ws("/ws/notes/", cookies=cookies, send={"add": "via socket"})
        self.assertEqual(
            reply["notes"],
            [
                {"text": "written by the test", "author": None},
                {"text": "via socket", "author": "alice"},
            ],
        )
        note = Note.objects.get(text="via socket")
        self.assertEqual(note.author, self.user)

    def test_static_files_are_served(self) -> None:
        self.assertEqual(
            self.http_get("/static/chat/hello.txt"), "hello from a static file\n"
        )


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
class SignedCookieSessionLiveTests(ChannelsLiveServerTestCase):
    """The class's override_settings reach the server process too."""

    def setUp(self) -> None:
        self.user = User.objects.create_user("alice", password="wonderland")

    def whoami(self, session_cookie: str) -> Any:
        cookies = {settings.SESSION_COOKIE_NAME: session_cookie}
        return async_to_sync(ws_first_json)(
            self.live_server_ws_url + "/ws/whoami/",
            origin=self.live_server_url,
            cookies=cookies,
        )[0]

    def signed_session(self, key: str | None) -> str:
        data = {
            SESSION_KEY: str(self.user.pk),
            "_auth_user_backend": settings.AUTHENTICATION_BACKENDS[0],
            "_auth_user_hash": self.user.get_session_auth_hash(),
        }
        return signing.dumps(
            data,
            key=key,
            salt="django.contrib.sessions.backends.signed_cookies",
            serializer=signing.JSONSerializer,
            compress=True,
        )

    def test_session_cookie_signed_with_the_project_key_logs_in(self) -> None:
        self.assertEqual(self.whoami(self.signed_session(None)), ALICE)

    def test_session_cookie_signed_with_another_secret_key_is_rejected(self) -> None:
        forged = self.signed_session("another secret key entirely")
        self.assertEqual(self.whoami(forged), ANONYMOUS)

    def test_login_in_consumer_sets_a_signed_session_cookie(self) -> None:
        reply, set_cookies = async_to_sync(ws_first_json)(
            self.live_server_ws_url + "/ws/login/?username=alice&password=wonderland",
            origin=self.live_server_url,
        )
        self.assertEqual(reply, ALICE)
        value = cookie_values(set_cookies)[settings.SESSION_COOKIE_NAME].value
        self.assertEqual(self.whoami(value), ALICE)
