"""The live server process imports the project as the test process did.

Channels' own sample project is laid out so that pytest-django puts the
directory of its ``manage.py`` first on ``sys.path``, and that directory holds
another ``tests`` package; its settings name ``"channels"``, which only
``install_as_channels()`` makes importable. Daphne's server process inherited
all of that by forking; achannels' server process is a new interpreter, so it
is told."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import sys, urllib.request
sys.path[:0] = [{outer!r}]
import tests  # resolved here from the outer directory ...
sys.path.insert(0, {inner!r})  # ... then a directory with another "tests" first
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.project.settings"
import warnings, achannels
warnings.simplefilter("ignore", achannels.ChannelsInstalledWarning)
achannels.install_as_channels()
import django
django.setup()
from achannels.testing.live import LiveServer
with LiveServer(static_wrapper=None) as server:
    with urllib.request.urlopen(server.url + "/") as response:
        print(response.read().decode())
"""

SETTINGS = """
SECRET_KEY = "x"
INSTALLED_APPS = ["django.contrib.contenttypes", "channels"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
ASGI_APPLICATION = "tests.project.asgi.application"
"""

ASGI = """
from channels.generic.http import AsyncHttpConsumer
from channels.routing import ProtocolTypeRouter


class Hello(AsyncHttpConsumer):
    async def handle(self, body):
        # achannels' class under the channels name, not an installed Channels.
        await self.send_response(200, AsyncHttpConsumer.__module__.encode())


application = ProtocolTypeRouter({"http": Hello.as_asgi()})
"""


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_live_server_process_resolves_packages_and_channels_as_the_test_process(
    tmp_path: Path,
) -> None:
    outer = tmp_path / "outer"
    write(outer / "tests" / "__init__.py")
    write(outer / "tests" / "project" / "__init__.py")
    write(outer / "tests" / "project" / "settings.py", SETTINGS)
    write(outer / "tests" / "project" / "asgi.py", ASGI)
    inner = outer / "tests" / "project"
    write(inner / "tests" / "__init__.py")  # the shadowing package
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(outer=str(outer), inner=str(inner))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "achannels.generic.http"
