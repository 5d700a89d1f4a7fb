"""The pytest plugin's ``channels_live_server`` fixture, in a pytest run of its
own (Django is configured there, never in this process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.django_project import PROJECT_DIR, project_env

INNER_TESTS = """
import asyncio
import json

from websockets.asyncio.client import connect
from websockets.typing import Origin


async def first_reply(server, path, message):
    async with connect(
        server.ws_url + path, origin=Origin(server.url), open_timeout=10
    ) as websocket:
        await websocket.send(json.dumps(message))
        return json.loads(await asyncio.wait_for(websocket.recv(), 10))


def test_server_is_uvicorn_on_localhost(channels_live_server):
    assert channels_live_server.url.startswith("http://localhost:")
    assert channels_live_server.ws_url.startswith("ws://localhost:")


def test_consumer_sees_rows_the_test_wrote(channels_live_server):
    from chat.models import Note

    Note.objects.create(text="written by pytest")
    reply = asyncio.run(first_reply(channels_live_server, "/ws/notes/", {"add": "x"}))
    assert [note["text"] for note in reply["notes"]] == ["written by pytest", "x"]
    assert Note.objects.count() == 2
"""

INNER_CONFIG = """
[pytest]
addopts = -p no:cacheprovider -p no:xdist
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


def test_channels_live_server_fixture_serves_project_on_test_database(
    tmp_path: Path,
) -> None:
    (tmp_path / "pytest.ini").write_text(INNER_CONFIG)
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["achannels.testing.pytest_plugin"]\n'
    )
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    env = project_env(tmp_path, PYTHONPATH=str(PROJECT_DIR))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout, result.stdout
    # The plugin created the test database and dropped it afterwards.
    assert not (tmp_path / "test-db.sqlite3").exists()
    assert not (tmp_path / "db.sqlite3").exists()
