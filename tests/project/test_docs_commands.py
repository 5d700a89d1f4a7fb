"""Every shell command and Python snippet of README.md and docs/quickstart.md,
run as a reader would run them (issue 13), so the two pages cannot drift.

The snippets become files in a temporary project exactly as printed; the
commands run against them with a free port added. What cannot run inside the
test suite is listed in ``NOT_RUN_HERE`` with the reason, and
``test_every_command_is_run_or_says_why_not`` fails for a command the pages
gain without this file learning it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.support.redis import require_redis
from tests.support.servers import REPO_ROOT, RunningServer, free_port, serve

README = REPO_ROOT / "README.md"
QUICKSTART = REPO_ROOT / "docs" / "quickstart.md"
DEPLOYMENT = REPO_ROOT / "docs" / "deployment.md"
TIMEOUT = 15.0
BIN = Path(sys.executable).parent

#: Commands the pages show that this suite does not run, and why.
NOT_RUN_HERE = {
    "make test": "it is this test suite",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[django,redis,server]'": (
        "the suite runs inside such an environment (the extras are checked)"
    ),
}


# --------------------------------------------------------------- the pages


def code_blocks(page: Path, lang: str) -> list[str]:
    """The fenced blocks of ``page`` in ``lang``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(), re.M | re.S)


def commands(page: Path) -> list[str]:
    """Each command of the page's console blocks, comments and line
    continuations resolved."""
    found = []
    for block in code_blocks(page, "console"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                found.append(re.sub(r"\s+", " ", line))
    return found


def snippet(page: Path, first_line: str) -> str:
    """The Python block of ``page`` that starts with ``first_line``."""
    for block in code_blocks(page, "python"):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"{page.name} has no python block starting {first_line!r}")


def write_files(page: Path, root: Path, *names: str) -> None:
    """Write the blocks headed ``# <name>`` into ``root``."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(snippet(page, f"# {name}\n"))


def documented(page: Path, prefix: str) -> list[str]:
    """The page's commands starting with ``prefix``; at least one."""
    found = [command for command in commands(page) if command.startswith(prefix)]
    assert found, f"{page.name} shows no command starting {prefix!r}"
    return found


def with_port(command: str, port: int) -> list[str]:
    """``command`` as argv from this venv, listening on ``port``."""
    argv = shlex.split(command)
    tool = argv[0]
    if tool == "python":
        argv[0] = sys.executable
    elif (BIN / tool).exists():
        argv[0] = str(BIN / tool)
    if tool == "hypercorn":
        return [*argv, "--bind", f"127.0.0.1:{port}"]
    if "runserver" in argv:
        return [*argv, f"127.0.0.1:{port}", "--noreload"]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
        return argv
    return [*argv, "--host", "127.0.0.1", "--port", str(port)]


def served(
    command: str, cwd: Path, env: dict[str, str] | None = None
) -> AbstractContextManager[RunningServer]:
    port = free_port()
    return serve(
        "",
        command=with_port(command, port),
        port=port,
        cwd=cwd,
        env={"PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})},
    )


async def exchange(url: str, origin: str, sent: dict[str, str]) -> list[object]:
    """Two clients on ``url``; the first sends ``sent``; what each receives."""
    async with (
        connect(url, origin=Origin(origin), open_timeout=TIMEOUT) as first,
        connect(url, origin=Origin(origin), open_timeout=TIMEOUT) as second,
    ):
        await first.send(json.dumps(sent))
        return [
            json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            for ws in (first, second)
        ]


def extras() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return set(project["project"]["optional-dependencies"])


# ------------------------------------------------------------ bookkeeping

#: Prefixes of the commands the tests below run (or check, for pip).
RUN = (
    "make run",
    "pip install",
    "uvicorn ",
    "hypercorn ",
    "granian ",
    "python manage.py ",
    "cd examples/chat",
    "../../.venv/bin/python manage.py migrate",
    "../../.venv/bin/uvicorn ",
    "REDIS_URL=",
)


def test_every_command_is_run_or_says_why_not() -> None:
    unknown = [
        command
        for page in (README, QUICKSTART)
        for command in commands(page)
        if command not in NOT_RUN_HERE and not command.startswith(RUN)
    ]
    assert not unknown, f"commands no test runs (add them here): {unknown}"


def test_pip_install_lines_name_extras_and_packages_that_exist() -> None:
    for page in (README, QUICKSTART):
        for command in documented(page, "pip install"):
            for package in shlex.split(command)[2:]:
                name, _, listed = package.partition("[")
                if name == "achannels":
                    assert set(listed.rstrip("]").split(",")) <= extras(), command
                else:
                    assert (BIN / name).exists(), f"{command}: {name} not installed"


# --------------------------------------------------------------- README


@pytest.fixture
def readme_project(tmp_path: Path) -> Path:
    write_files(README, tmp_path, "myapp/consumers.py", "project/asgi.py")
    return tmp_path


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
async def test_readme_consumer_serves_on_each_server_line(
    readme_project: Path, server: str
) -> None:
    [command] = [
        line
        for line in documented(README, f"{server} ")
        if "project.asgi:application" in line
    ]
    with served(command, readme_project) as running:
        got = await exchange(
            f"{running.ws_url}/ws/chat/lobby/", running.url, {"text": "hi"}
        )
    assert got == [{"text": "hi"}, {"text": "hi"}]


def start_make(target: str, port: int, stamp: Path) -> subprocess.Popen[bytes]:
    # This venv and a fresh demo stamp: nothing is installed by the test.
    stamp.touch()
    with (stamp.parent / f"make-{port}.log").open("wb") as log:
        return subprocess.Popen(
            [
                "make",
                target,
                f"PORT={port}",
                f"VENV={sys.prefix}",
                f"RUN_STAMP={stamp}",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_readme_make_run_serves_the_demo_on_the_given_port(tmp_path: Path) -> None:
    assert "make run PORT=8001" in commands(README)
    port = free_port()
    make = start_make("run", port, tmp_path / "stamp")
    try:
        log = tmp_path / f"make-{port}.log"
        RunningServer("make run", port, make, log).wait_until_listening(60)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
        assert page.status_code == 200
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(TIMEOUT)


def test_make_run_on_a_busy_port_says_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        make = start_make("run", port, tmp_path / "stamp")
        make.wait(TIMEOUT)
    output = (tmp_path / f"make-{port}.log").read_text()
    assert make.returncode != 0
    assert f"Cannot serve on 127.0.0.1:{port}" in output
    assert f"make run PORT={port + 1}" in output


# ----------------------------------------------------------- quick start


def test_quickstart_demo_without_make(tmp_path: Path) -> None:
    shown = commands(QUICKSTART)
    assert "cd examples/chat" in shown
    [migrate] = documented(QUICKSTART, "../../.venv/bin/python manage.py migrate")
    [run] = documented(QUICKSTART, "../../.venv/bin/uvicorn ")
    chat = REPO_ROOT / "examples" / "chat"
    env = {"REDIS_URL": "", "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, *shlex.split(migrate)[1:]],
        cwd=chat, env={**os.environ, **env}, check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    with served(run.replace("../../.venv/bin/uvicorn", "uvicorn"), chat, env) as server:
        page = httpx.get(f"{server.url}/", timeout=TIMEOUT)
        assert page.status_code == 200


def test_quickstart_cluster_command_serves_two_workers_on_redis() -> None:
    url = require_redis()
    [command] = documented(QUICKSTART, "REDIS_URL=")
    assignment, rest = command.split(" ", 1)
    rest = rest.replace("../../.venv/bin/uvicorn", "uvicorn")
    chat = REPO_ROOT / "examples" / "chat"
    with served(rest, chat, {"REDIS_URL": url}) as server:
        assert assignment.startswith("REDIS_URL=redis://")
        page = httpx.get(f"{server.url}/", timeout=TIMEOUT)
        assert page.status_code == 200


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """quickstart.md section 3: startproject, startapp, then its files."""
    root = tmp_path_factory.mktemp("tutorial")
    admin = [sys.executable, "-m", "django"]
    subprocess.run([*admin, "startproject", "mysite", "."], cwd=root, check=True)
    subprocess.run([*admin, "startapp", "chat"], cwd=root, check=True)
    write_files(
        QUICKSTART, root, "chat/consumers.py", "chat/routing.py", "mysite/asgi.py"
    )
    settings = snippet(QUICKSTART, "# settings.py\n").replace(
        "# ... django.contrib apps ...", "*_contrib,"
    )
    with (root / "mysite" / "settings.py").open("a") as file:
        file.write(
            "\n_contrib = [a for a in INSTALLED_APPS if a.startswith('django.')]\n"
            + settings
        )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=root, env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield root


TUTORIAL_SERVERS = [
    "python manage.py runserver",
    "uvicorn mysite.asgi:application",
    "hypercorn mysite.asgi:application",
    "granian --interface asgi mysite.asgi:application",
]


@pytest.mark.parametrize("command", TUTORIAL_SERVERS)
async def test_quickstart_tutorial_room_talks_on_each_server(
    tutorial: Path, command: str
) -> None:
    # runserver and uvicorn are the page's own lines; hypercorn and granian
    # are the README's and deployment.md's, on the same project.
    if command.startswith(("python", "uvicorn")):
        assert command in commands(QUICKSTART)
    with served(command, tutorial) as server:
        got = await exchange(
            f"{server.ws_url}/ws/rooms/lobby/", server.url, {"text": "hello"}
        )
    assert got == [{"text": "hello"}, {"text": "hello"}]


async def test_tutorial_refuses_an_unknown_room_path_with_404(tutorial: Path) -> None:
    with served("uvicorn mysite.asgi:application", tutorial) as server:
        with pytest.raises(InvalidStatus) as refused:
            await exchange(f"{server.ws_url}/ws/nowhere/", server.url, {"text": "x"})
        assert refused.value.response.status_code == 404
        log = server.wait_for_output("No route found", TIMEOUT)
    assert "Traceback" not in log


def test_readme_runworker_line_runs_and_says_so_once(tutorial: Path) -> None:
    [command] = documented(README, "python manage.py runworker")
    argv = [sys.executable, *shlex.split(command)[1:-1], "thumbnails"]
    worker = subprocess.Popen(
        argv, cwd=tutorial, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        line = worker.stdout.readline().decode()  # type: ignore[union-attr]
        assert "Running worker for channels ['thumbnails']" in line
    finally:
        # SIGTERM: stops the worker, or the process if it is not running yet.
        worker.send_signal(signal.SIGTERM)
        rest, _ = worker.communicate(timeout=TIMEOUT)
    # Printed once (tests/django/test_worker.py checks it after a message).
    assert "Running worker for channels" not in rest.decode()


def test_quickstart_test_example_passes(tutorial: Path) -> None:
    (tutorial / "test_rooms.py").write_text(snippet(QUICKSTART, "import pytest\n"))
    # The page uses pytest-django for the settings; this conftest does that.
    (tutorial / "conftest.py").write_text(
        textwrap.dedent(
            """
            import os

            import django

            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            django.setup()
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "test_rooms.py"],
        cwd=tutorial, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


async def test_quickstart_app_without_django_echoes(tmp_path: Path) -> None:
    write_files(QUICKSTART, tmp_path, "app.py")
    [command] = documented(QUICKSTART, "uvicorn app:application")
    with served(command, tmp_path) as server:
        async with connect(f"{server.ws_url}/ws/echo/", open_timeout=TIMEOUT) as ws:
            await ws.send("ping")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "ping"


# ------------------------------------------------------- deployment logs


LOGGED_APP = """
from achannels.routing import ProtocolTypeRouter, URLRouter

application = ProtocolTypeRouter({"websocket": URLRouter([])})
"""


@pytest.mark.parametrize(
    "command",
    [line for line in commands(DEPLOYMENT) if "logging.json" in line],
    ids=lambda command: command.split()[0],
)
async def test_deployment_logging_json_formats_achannels_lines(
    tmp_path: Path, command: str
) -> None:
    [config] = [b for b in code_blocks(DEPLOYMENT, "json") if '"achannels"' in b]
    (tmp_path / "logging.json").write_text(config)
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "asgi.py").write_text(LOGGED_APP)
    if command.startswith("gunicorn"):
        port = free_port()
        argv = [str(BIN / "gunicorn"), *shlex.split(command)[1:]]
        argv += ["--bind", f"127.0.0.1:{port}"]
        context = serve("", command=argv, port=port, cwd=tmp_path)
    else:
        context = served(command, tmp_path)
    with context as server:
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws_url}/ws/nowhere/", open_timeout=TIMEOUT):
                pass
        log = server.wait_for_output("No route found", TIMEOUT)
    lines = [line for line in log.splitlines() if "No route found" in line]
    assert len(lines) == 1, log
    assert re.match(
        r"\d{4}-\d\d-\d\d [\d:,]+ WARNING achannels\.routing: ", lines[0]
    ), log


# ------------------------------------------------------- migration rewrite

CHANNELS_CODE = """\
import channels.layers
from channels.generic.websocket import AsyncWebsocketConsumer
from channels import DEFAULT_CHANNEL_LAYER
import channels_redis.core

LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def notify(channels, consumer):
    layer = channels.layers.get_channel_layer()
    channels.append(consumer.channels)
    return layer
"""

MIGRATED_CODE = """\
import achannels.layers
from achannels.generic.websocket import AsyncWebsocketConsumer
from achannels import DEFAULT_CHANNEL_LAYER
import channels_redis.core

LAYERS = {"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}


def notify(channels, consumer):
    layer = achannels.layers.get_channel_layer()
    channels.append(consumer.channels)
    return layer
"""


def test_migration_rewrite_handles_imports_and_their_uses(tmp_path: Path) -> None:
    page = REPO_ROOT / "docs" / "migration.md"
    [block] = [b for b in code_blocks(page, "console") if "xargs sed" in b]
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "tasks.py").write_text(CHANNELS_CODE)
    subprocess.run(["sh", "-c", block], cwd=tmp_path, check=True, timeout=TIMEOUT)
    assert (tmp_path / "app" / "tasks.py").read_text() == MIGRATED_CODE
    # The checklist's grep then finds nothing left to change.
    checklist = subprocess.run(
        ["sh", "-c", 'grep -rn "channels\\." --include=*.py . | grep -v achannels'],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    leftovers = [
        line
        for line in checklist.stdout.splitlines()
        if "channels_redis" not in line and ".channels" not in line
    ]
    assert leftovers == [], checklist.stdout
