"""``manage.py runserver`` serves the sample project on uvicorn, as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.support.django_project import copy_project, manage_command, project_env
from tests.support.servers import free_port, serve

DEADLINE = 10.0
RELOAD_DEADLINE = 40.0
#: Django's StatReloader looks at files once a second.
NUDGE_INTERVAL = 2.5


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            body: bytes = response.read()
            return response.status, body.decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


async def ws_echo(url: str, origin: str, text: str) -> str:
    async with connect(
        url, origin=Origin(origin), open_timeout=DEADLINE, close_timeout=DEADLINE
    ) as websocket:
        await websocket.send(text)
        reply = await asyncio.wait_for(websocket.recv(), DEADLINE)
    return str(reply)


def runserver(port: int, *options: str) -> list[str]:
    return manage_command("runserver", f"127.0.0.1:{port}", "--noreload", *options)


async def test_runserver_noreload_serves_websocket_echo_http_and_static_files(
    tmp_path: Path,
) -> None:
    port = free_port()
    with serve(
        "", command=runserver(port), port=port, env=project_env(tmp_path)
    ) as server:
        assert await ws_echo(f"{server.ws_url}/ws/echo/", server.url, "ping") == "ping"
        status, body = await asyncio.to_thread(http_get, f"{server.url}/")
        assert (status, body) == (200, "testproject index v1")
        static = await asyncio.to_thread(
            http_get, f"{server.url}/static/chat/hello.txt"
        )
        assert static == (200, "hello from a static file\n")
        banner = server.output()
    assert "Performing system checks..." in banner
    assert "Django version " in banner
    assert "using settings 'testproject.settings'" in banner
    assert "Starting ASGI/uvicorn version" in banner
    assert f"development server at http://127.0.0.1:{port}/" in banner
    assert "Quit the server with CONTROL-C." in banner


async def test_runserver_serves_static_files_without_debug_only_if_insecure(
    tmp_path: Path,
) -> None:
    env = project_env(tmp_path, TESTPROJECT_DEBUG="0")
    for options, expected in (((), 404), (("--insecure",), 200)):
        port = free_port()
        with serve("", command=runserver(port, *options), port=port, env=env) as server:
            status, _ = await asyncio.to_thread(
                http_get, f"{server.url}/static/chat/hello.txt"
            )
        assert status == expected, (options, server.output())


def test_runserver_reports_a_busy_port_like_django(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            runserver(port, "--skip-checks"),
            env=project_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "Error: That port is already in use." in result.stderr


def test_runserver_autoreloads_after_a_module_is_edited(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    port = free_port()
    log_path = tmp_path / "runserver.log"
    with log_path.open("wb") as log:
        # Its own session, so the reloader and its server child stop together.
        process = subprocess.Popen(
            manage_command("runserver", f"127.0.0.1:{port}", project_dir=project),
            cwd=project,
            env=project_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_page(url, "testproject index v1", process, log_path)
        version = project / "chat" / "version.py"
        version.write_text(version.read_text().replace('"1"', '"2"'))

        def touch() -> None:
            # Django's reloader takes a module's first mtime as its baseline;
            # if it first looked after the edit, a newer mtime still counts.
            os.utime(version)

        wait_for_page(url, "testproject index v2", process, log_path, nudge=touch)
        output = log_path.read_text()
        assert output.count("Starting ASGI/uvicorn version") >= 2, output
        assert "chat/version.py changed, reloading." in output, output
        # The old server shut down before its process exited: a server thread
        # left running into the interpreter's teardown can crash the child,
        # and with it the reloader.
        reloaded = output.split("changed, reloading.", 1)[1]
        assert "Finished server process" in reloaded.split("Starting ASGI")[0], output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(DEADLINE)


def wait_for_page(
    url: str,
    expected: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    nudge: Callable[[], None] | None = None,
) -> None:
    """Poll ``url`` until it shows ``expected``, calling ``nudge`` every
    ``NUDGE_INTERVAL`` seconds meanwhile."""
    deadline = time.monotonic() + RELOAD_DEADLINE
    next_nudge = time.monotonic() + NUDGE_INTERVAL
    body = ""
    while time.monotonic() < deadline:
        if nudge is not None and time.monotonic() >= next_nudge:
            nudge()
            next_nudge = time.monotonic() + NUDGE_INTERVAL
        assert process.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read().decode()
        except OSError:
            body = ""
        if body == expected:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"{url} did not show {expected!r} within {RELOAD_DEADLINE}s (last {body!r}):\n"
        f"{log_path.read_text()}"
    )


async def test_runserver_shows_achannels_log_lines_with_level_time_and_name(
    tmp_path: Path,
) -> None:
    from websockets.exceptions import InvalidStatus

    port = free_port()
    with serve(
        "", command=runserver(port), port=port, env=project_env(tmp_path)
    ) as server:
        try:
            await ws_echo(f"{server.ws_url}/ws/nowhere/", server.url, "ping")
        except InvalidStatus as refused:
            assert refused.response.status_code == 404
        else:
            raise AssertionError("an unmatched route was accepted")
        log = server.wait_for_output("No route found", DEADLINE)
        [line] = [line for line in log.splitlines() if "No route found" in line]
    # Django's server-log time, then level and logger name.
    assert line.startswith("[") and "] WARNING achannels.routing: " in line, line
