"""Run the third-party project (``tests/thirdparty/project``) in subprocesses.

The pytest process never imports a package written for Channels: they import
``channels``, and this process must keep the real one importable (the Redis
interop tests use it) and unimported by the alias. Servers, ``migrate`` and
one-off senders run in subprocesses whose settings call
``install_as_channels()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.servers import REPO_ROOT

from tests.support.servers import RunningServer, free_port, serve

__all__ = ["APP", "STRAWBERRY_APP", "project_env", "run_in_project", "serve_project"]

SETTINGS = "tests.thirdparty.project.settings"
APP = "tests.thirdparty.project.asgi:application"
STRAWBERRY_APP = "tests.thirdparty.project.asgi_strawberry:application"
TIMEOUT = 60


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a project process: its settings, its SQLite file in
    ``tmp_path``, the repository importable, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "THIRDPARTY_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        THIRDPARTY_DB=str(tmp_path / "db.sqlite3"),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{argv[1:4]} failed:\n{result.stdout}"
    return result.stdout


def migrate(env: dict[str, str]) -> None:
    """Create the project's tables (and channels-postgres's, when enabled)."""
    django = [sys.executable, "-W", "error", "-m", "django"]
    _run([*django, "migrate", "--noinput", "-v", "0"], env)
    if env.get("THIRDPARTY_PG_DB"):
        database = ["--database", "channels_postgres"]
        _run([*django, "migrate", *database, "--noinput", "-v", "0"], env)


def run_in_project(code: str, env: dict[str, str]) -> Any:
    """Run ``code`` (dedented) after ``django.setup()`` in a project process;
    return the JSON it printed on its last line."""
    setup = "import django\ndjango.setup()\n"
    out = _run([sys.executable, "-c", setup + textwrap.dedent(code)], env)
    return json.loads(out.strip().splitlines()[-1])


@contextmanager
def serve_project(
    tmp_path: Path,
    app: str = APP,
    kind: str = "uvicorn-websockets",
    *,
    command: list[str] | None = None,
    **extra: str,
) -> Iterator[RunningServer]:
    """Migrate, then serve ``app`` with ``kind`` (or run ``command``, which
    gets ``{port}`` filled in); fail if the server printed a traceback."""
    env = project_env(tmp_path, **extra)
    migrate(env)
    port = free_port()
    if command is not None:
        command = [part.format(port=port) for part in command]
    with serve(app, kind, env=env, command=command, port=port) as server:
        yield server
        output = server.stop()  # its shutdown is checked too
    assert "Traceback" not in output, output
