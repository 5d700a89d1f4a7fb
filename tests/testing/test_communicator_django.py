"""Communicators driving Django ORM code inside a Django TestCase.

The Django side lives in the sample project
(tests/django_project/chat/tests/test_communicator_db.py) and runs in its
own process, as every Django test of this suite does.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.django_project import run_django_tests


def test_communicator_calls_leave_the_testcase_database_connection_open(
    tmp_path: Path,
) -> None:
    output = run_django_tests("chat.tests.test_communicator_db", tmp_path)
    assert "test_websocket_consumer_queries_in_the_test_transaction" in output
    assert "test_sync_consumer_queries_then_the_test_still_can" in output
