"""A Django TestCase async test drives a consumer whose ORM queries run
through database_sync_to_async, on a file-backed SQLite database: the
communicator must not close the test's database connection."""

import io
import os
import unittest

from _transcript import Transcript, configure_django, scratch_dir

configure_django(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(scratch_dir(), "db.sqlite3"),
            "TEST": {"NAME": os.path.join(scratch_dir(), "test-db.sqlite3")},
        }
    }
)

from channels.db import database_sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.test import TestCase  # noqa: E402
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
    teardown_test_environment,
)

observed = []


class UserCounter(AsyncWebsocketConsumer):
    async def connect(self):
        self.at_connect = await database_sync_to_async(User.objects.count)()
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        now = await database_sync_to_async(User.objects.count)()
        await self.send(f"{self.at_connect} {now}")


class ConsumerQueries(TestCase):
    async def test_counts_rows_of_the_test_transaction(self):
        await User.objects.acreate(username="ann")
        communicator = WebsocketCommunicator(UserCounter.as_asgi(), "/ws/")
        observed.append(await communicator.connect())
        await User.objects.acreate(username="bob")
        await communicator.send_to("count")
        observed.append(await communicator.receive_from())
        # The test's own connection still works while the communicator runs.
        observed.append(await User.objects.acount())
        await communicator.disconnect()


transcript = Transcript()
setup_test_environment()
old_config = setup_databases(verbosity=0, interactive=False)
stream = io.StringIO()
suite = unittest.defaultTestLoader.loadTestsFromTestCase(ConsumerQueries)
result = unittest.TextTestRunner(stream=stream, verbosity=0).run(suite)
teardown_databases(old_config, verbosity=0)
teardown_test_environment()
transcript.equal("tests run", result.testsRun)
transcript.equal(
    "failures and errors",
    [
        test_output.strip().splitlines()[-1]
        for _, test_output in result.failures + result.errors
    ],
)
transcript.equal("observed", observed)
transcript.dump()
