"""Settings-driven pieces: AllowedHostsOriginValidator, system checks,
management command wiring and the database helpers."""

from __future__ import annotations

import threading
from typing import Any

from django.core.management import CommandError, call_command, get_commands
from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from achannels.apps import check_setup
from achannels.db import aclose_old_connections, database_sync_to_async
from achannels.security.websocket import AllowedHostsOriginValidator
from achannels.testing import WebsocketCommunicator

PROJECT_APPS = [
    "achannels",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "chat",
]


async def accept(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()


async def connects(origin: bytes) -> bool:
    communicator = WebsocketCommunicator(
        AllowedHostsOriginValidator(accept), "/ws/", headers=[(b"origin", origin)]
    )
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    else:
        await communicator.wait(timeout=5)
    return connected


class AllowedHostsOriginValidatorTests(SimpleTestCase):
    @override_settings(ALLOWED_HOSTS=["example.com", ".example.org"], DEBUG=True)
    async def test_allowed_hosts_are_the_allowed_origins(self) -> None:
        self.assertTrue(await connects(b"https://example.com"))
        self.assertTrue(await connects(b"http://chat.example.org:8000"))
        self.assertFalse(await connects(b"https://www.example.com"))
        self.assertFalse(await connects(b"http://localhost:8000"))

    @override_settings(ALLOWED_HOSTS=[], DEBUG=True)
    async def test_debug_without_allowed_hosts_allows_local_origins(self) -> None:
        self.assertTrue(await connects(b"http://localhost:8000"))
        self.assertTrue(await connects(b"http://app.localhost:3000"))
        self.assertTrue(await connects(b"http://127.0.0.1:8000"))
        self.assertTrue(await connects(b"http://[::1]:8000"))
        self.assertFalse(await connects(b"http://example.com"))

    @override_settings(ALLOWED_HOSTS=[], DEBUG=False)
    async def test_no_allowed_hosts_without_debug_allows_nothing(self) -> None:
        self.assertFalse(await connects(b"http://localhost:8000"))

    @override_settings(ALLOWED_HOSTS=["*"], DEBUG=False)
    async def test_star_allows_any_origin(self) -> None:
        self.assertTrue(await connects(b"https://anywhere.test"))
        self.assertTrue(await connects(b"null"))


def ids(**settings: Any) -> list[str]:
    with override_settings(**settings):
        return [message.id or "" for message in check_setup()]


class SystemCheckTests(SimpleTestCase):
    def test_project_setup_passes(self) -> None:
        self.assertEqual(ids(), [])

    def test_missing_asgi_application_is_explained(self) -> None:
        with override_settings(ASGI_APPLICATION=None):
            [message] = check_setup()
        self.assertEqual(message.id, "achannels.W001")
        self.assertIn("ASGI_APPLICATION", message.msg)
        self.assertIn("myproject.asgi.application", message.hint or "")

    def test_achannels_after_staticfiles_is_explained(self) -> None:
        apps = [app for app in PROJECT_APPS if app != "achannels"] + ["achannels"]
        with override_settings(INSTALLED_APPS=apps):
            [message] = check_setup()
            self.assertEqual(get_commands()["runserver"], "django.contrib.staticfiles")
        self.assertEqual(message.id, "achannels.W002")
        self.assertIn("above 'django.contrib.staticfiles'", message.hint or "")

    def test_channels_installed_next_to_achannels_is_explained(self) -> None:
        self.assertEqual(
            ids(INSTALLED_APPS=[*PROJECT_APPS, "channels"]), ["achannels.W004"]
        )
        with override_settings(INSTALLED_APPS=["channels", *PROJECT_APPS]):
            [message] = check_setup()
            self.assertEqual(get_commands()["runworker"], "channels")
        self.assertIn("its runworker replaces ours", message.msg)

    def test_asgi_application_without_channel_layers_is_explained(self) -> None:
        with override_settings(CHANNEL_LAYERS={}):
            [message] = check_setup()
        self.assertEqual(message.id, "achannels.W005")
        self.assertIn("self.channel_layer is None", message.msg)
        self.assertIn("InMemoryChannelLayer", message.hint or "")
        with override_settings(CHANNEL_LAYERS={}, ASGI_APPLICATION=None):
            self.assertEqual(ids(), ["achannels.W001"])

    def test_check_runs_with_the_django_check_framework(self) -> None:
        with override_settings(ASGI_APPLICATION=None):
            with self.assertRaisesMessage(CommandError, "achannels.W001"):
                call_command("check", fail_level="WARNING")


class CommandWiringTests(SimpleTestCase):
    def test_achannels_provides_runserver_and_runworker(self) -> None:
        commands = get_commands()
        self.assertEqual(commands["runserver"], "achannels")
        self.assertEqual(commands["runworker"], "achannels")

    @override_settings(ASGI_APPLICATION=None)
    def test_runserver_without_asgi_application_says_what_to_set(self) -> None:
        with self.assertRaisesMessage(CommandError, "ASGI_APPLICATION"):
            call_command("runserver", "--noreload")

    @override_settings(CHANNEL_LAYERS={})
    def test_runworker_without_the_layer_says_what_to_configure(self) -> None:
        with self.assertRaisesMessage(CommandError, "channel layer 'default'"):
            call_command("runworker", "some-channel")


class DatabaseHelperTests(TransactionTestCase):
    async def test_database_sync_to_async_closes_the_connection_it_used(
        self,
    ) -> None:
        used: dict[str, Any] = {}

        def query() -> int:
            from django.db import connection as thread_connection

            with thread_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                used["connection"] = thread_connection
                used["thread"] = threading.current_thread()
                return int(cursor.fetchone()[0])

        # A thread of its own, as a sync consumer's handler would have.
        result = await database_sync_to_async(query, thread_sensitive=False)()
        self.assertEqual(result, 1)
        self.assertIsNot(used["thread"], threading.main_thread())
        # CONN_MAX_AGE is 0: the connection is obsolete once the call ends.
        self.assertIsNone(used["connection"].connection)

    async def test_database_sync_to_async_passes_results_and_errors(self) -> None:
        @database_sync_to_async
        def divide(a: int, b: int) -> float:
            return a / b

        self.assertEqual(await divide(6, 3), 2)
        with self.assertRaises(ZeroDivisionError):
            await divide(1, 0)

    def test_aclose_old_connections_closes_obsolete_connections(self) -> None:
        from asgiref.sync import async_to_sync

        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        self.assertIsNotNone(connection.connection)
        async_to_sync(aclose_old_connections)()
        self.assertIsNone(connection.connection)
