"""The sample project's Django test suite, one subprocess per module.

Each module is a group of claims; a failure shows the Django runner's output
naming the failed test. See tests/django_project/chat/tests/.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.django_project import run_django_tests, run_django_tests_unchecked


def test_live_server_testcase_serves_auth_sessions_origin_checks_and_models(
    tmp_path: Path,
) -> None:
    output = run_django_tests("chat.tests.test_live", tmp_path)
    assert "test_login_in_consumer_persists_across_reconnect" in output
    assert "test_sync_consumer_reads_and_writes_models" in output


def test_session_and_cookie_middleware_save_and_send_cookies_like_django(
    tmp_path: Path,
) -> None:
    run_django_tests("chat.tests.test_sessions", tmp_path)


def test_get_user_login_logout_and_auth_middleware_follow_django_auth(
    tmp_path: Path,
) -> None:
    run_django_tests("chat.tests.test_auth", tmp_path)


def test_allowed_hosts_origins_system_checks_commands_and_db_helpers(
    tmp_path: Path,
) -> None:
    run_django_tests("chat.tests.test_setup", tmp_path)


def test_live_server_testcase_refuses_an_in_memory_sqlite_test_database(
    tmp_path: Path,
) -> None:
    result = run_django_tests_unchecked(
        "chat.tests.test_live.LiveServerTests", tmp_path, TESTPROJECT_TEST_DB=":memory:"
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stdout, result.stdout
    assert "cannot open the in-memory SQLite database 'default'" in result.stdout
    assert "['TEST']['NAME'] to a file path" in result.stdout
