"""``pytest -p achannels.testing.channels_alias``: a test suite written for
Channels (conftest, ``INSTALLED_APPS``, tests) runs on achannels without a
code change, here against a DCRF consumer. In pytest runs of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.servers import REPO_ROOT

from tests.support.thirdparty import project_env

# Imports channels before anything could call install_as_channels(): only the
# plugin, loaded before conftests, makes that achannels.
INNER_CONFTEST = """
import channels
import django
from django.conf import settings

settings.configure(
    SECRET_KEY="x",
    INSTALLED_APPS=["channels", "django.contrib.auth", "django.contrib.contenttypes"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
)
django.setup()
"""

INNER_TEST = """
import asyncio

import channels
from channels.testing import WebsocketCommunicator

from tests.thirdparty.project.consumers import EchoConsumer


def test_channels_is_achannels():
    assert channels.__name__ == "achannels"


def test_dcrf_consumer_under_a_channels_communicator():
    async def echo():
        communicator = WebsocketCommunicator(EchoConsumer.as_asgi(), "/ws/echo/")
        connected, _ = await communicator.connect()
        await communicator.send_json_to(
            {"action": "echo", "text": "hi", "request_id": 1}
        )
        reply = await communicator.receive_json_from()
        await communicator.disconnect()
        return connected, reply

    assert asyncio.run(echo()) == (
        True,
        {"errors": [], "data": {"text": "hi"}, "action": "echo",
         "response_status": 200, "request_id": 1},
    )
"""

INNER_CONFIG = """
[pytest]
addopts = -p no:cacheprovider -p no:xdist
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


def run_inner_suite(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(INNER_CONFIG)
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = project_env(tmp_path)
    del env["DJANGO_SETTINGS_MODULE"]  # the inner conftest configures Django
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", *options, str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=100,
    )


def test_plugin_runs_a_channels_suite_on_achannels(tmp_path: Path) -> None:
    result = run_inner_suite(tmp_path, "-p", "achannels.testing.channels_alias")
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout, result.stdout
    assert "achannels: install_as_channels() is active" in result.stdout


def test_without_the_plugin_the_same_suite_gets_the_real_channels(
    tmp_path: Path,
) -> None:
    result = run_inner_suite(tmp_path)
    assert result.returncode != 0, result.stdout
    # Channels' testing package imports Daphne, which is not installed.
    assert "site-packages/channels/testing/" in result.stdout, result.stdout
