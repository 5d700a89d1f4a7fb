"""ORM code under test communicators inside a Django TestCase.

A TestCase wraps each test in a transaction on one connection. Consumers
driven by a communicator must not close that connection (Channels 4.2+
makes close_old_connections a no-op during communicator calls): with a
file-backed SQLite test database a closed connection fails the next query.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from chat.models import Note
from django.db import connections
from django.test import TestCase

from achannels.db import aclose_old_connections, database_sync_to_async
from achannels.generic.http import AsyncHttpConsumer
from achannels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from achannels.testing import HttpCommunicator, WebsocketCommunicator


@database_sync_to_async
def count_notes() -> int:
    return Note.objects.count()


class CountingWebsocket(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await aclose_old_connections()
        await self.accept(str(await count_notes()))

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        await database_sync_to_async(Note.objects.create)(text=text_data or "")
        await self.send(text_data=str(await count_notes()))


class CountingHttp(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        count = await count_notes()
        await self.send_response(200, str(count).encode())


class SyncNotes(WebsocketConsumer):
    def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        # A sync consumer's own thread: its connection must stay usable too.
        self.send(text_data=str(Note.objects.filter(text=text_data).count()))


class CommunicatorKeepsTheTestDatabaseOpen(TestCase):
    def setUp(self) -> None:
        Note.objects.create(text="seed")

    def assert_file_database(self) -> None:
        name: Any = connections["default"].settings_dict["NAME"]
        self.assertNotIn("memory", str(name))

    async def notes_seen_by_the_test(self) -> int:
        # Not database_sync_to_async: outside a communicator call it closes
        # old connections, under Channels too.
        return await sync_to_async(Note.objects.count)()

    async def test_websocket_consumer_queries_in_the_test_transaction(self) -> None:
        self.assert_file_database()
        communicator = WebsocketCommunicator(CountingWebsocket.as_asgi(), "/")
        self.assertEqual(await communicator.connect(), (True, "1"))
        await communicator.send_to(text_data="second")
        self.assertEqual(await communicator.receive_from(), "2")
        await communicator.disconnect()
        self.assertEqual(await self.notes_seen_by_the_test(), 2)

    async def test_http_consumer_queries_in_the_test_transaction(self) -> None:
        self.assert_file_database()
        communicator = HttpCommunicator(CountingHttp.as_asgi(), "GET", "/")
        response = await communicator.get_response()
        self.assertEqual(response["body"], b"1")
        self.assertEqual(await self.notes_seen_by_the_test(), 1)

    async def test_sync_consumer_queries_then_the_test_still_can(self) -> None:
        self.assert_file_database()
        communicator = WebsocketCommunicator(SyncNotes.as_asgi(), "/")
        self.assertEqual(await communicator.connect(), (True, None))
        await communicator.send_to(text_data="seed")
        # The sync consumer has its own thread and connection, which sees
        # no committed row; what matters is that nothing was closed.
        self.assertIn(await communicator.receive_from(), ("0", "1"))
        await communicator.disconnect()
        self.assertEqual(await self.notes_seen_by_the_test(), 1)
