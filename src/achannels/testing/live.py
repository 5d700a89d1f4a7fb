"""Serve the Django project with uvicorn for end-to-end tests (no Daphne).

``ChannelsLiveServerTestCase`` is Channels' test case of that name: a
``TransactionTestCase`` with the project's ``ASGI_APPLICATION`` running in a
uvicorn subprocess on a free port, against the test database.
``LiveServer`` is the server on its own, for pytest fixtures (see
``achannels.testing.pytest_plugin``) or scripts.

The server runs in another process, so the test database must be one that
process can open: a file for SQLite (``DATABASES[...]["TEST"]["NAME"]``),
never ``:memory:``. The process gets the test process's database names,
``DEBUG``, ``ALLOWED_HOSTS``, the test class's ``override_settings`` and
``live_server_settings``; other run-time changes to settings stay in the
test process.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.testcases import TransactionTestCase
from django.test.utils import modify_settings

from .._install import installed
from ..routing import get_default_application as get_default_application
from ._live_server import CONFIG_ENV

__all__ = ["ChannelsLiveServerTestCase", "LiveServer"]

STATIC_WRAPPER = "django.contrib.staticfiles.handlers.ASGIStaticFilesHandler"


def _dotted(obj: type | str | None) -> str | None:
    if obj is None or isinstance(obj, str):
        return obj
    return f"{obj.__module__}.{obj.__qualname__}"


def _test_database_names() -> dict[str, str]:
    names = {}
    for alias in connections:
        connection = connections[alias]
        if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
            raise ImproperlyConfigured(
                f"The live server runs in another process, which cannot open the "
                f"in-memory SQLite database {alias!r}: set "
                f"DATABASES[{alias!r}]['TEST']['NAME'] to a file path."
            )
        names[alias] = str(connection.settings_dict["NAME"])
    return names


def _import_path(modules: list[str]) -> list[str]:
    """``sys.path`` for the server process: first the directories that the
    top-level packages of ``modules`` came from here, then this process's
    ``sys.path``. pytest may put first a directory holding another package
    of the same name (a ``tests`` inside ``tests``); this process resolved the
    name already, the new one must resolve it the same way."""
    first = []
    for name in modules:
        top = sys.modules.get(name.partition(".")[0])
        origin = getattr(top, "__file__", None)
        if not origin:
            continue  # not imported here, or a namespace package
        root = os.path.dirname(origin)
        if os.path.basename(origin) == "__init__.py":
            root = os.path.dirname(root)
        first.append(root)
    path = first + [entry or os.getcwd() for entry in sys.path]
    return list(dict.fromkeys(path))


class LiveServer:
    """uvicorn serving Django's ``ASGI_APPLICATION`` in a subprocess.

    ``start()`` (or ``with LiveServer() as server:``) blocks until the server
    accepts connections; then ``url``/``ws_url`` (``http://host:port``,
    ``ws://host:port``) and ``port`` are set. The server uses the databases
    the calling process has open (its test databases once they are set up)
    and ``settings`` on top of the current ``DEBUG`` and ``ALLOWED_HOSTS``
    (plus ``host``); values must be JSON-serialisable.
    ``static_wrapper`` (a class or dotted path, ``None`` for none) wraps the
    application; by default static files are served as by runserver.

    ``start()`` raises ``ImproperlyConfigured`` without a settings module or
    with an in-memory SQLite database, ``RuntimeError`` if the server process
    exits while starting (its output is on stderr) and ``TimeoutError`` if
    it is not ready within ``startup_timeout`` seconds.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 0,
        *,
        static_wrapper: type | str | None = STATIC_WRAPPER,
        settings: Mapping[str, Any] | None = None,
        startup_timeout: float = 30.0,
        log_level: str = "warning",
    ):
        self.host = host
        self.requested_port = port
        self.static_wrapper = _dotted(static_wrapper)
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self.log_level = log_level
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self._netloc()}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port`` of the running server."""
        return f"ws://{self._netloc()}"

    def _netloc(self) -> str:
        if self.port is None:
            raise RuntimeError("The live server is not running: call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def _config(self, ready_fd: int) -> str:
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(
            settings, "SETTINGS_MODULE", None
        )
        if not settings_module:
            raise ImproperlyConfigured(
                "The live server process needs a settings module to import: set "
                "DJANGO_SETTINGS_MODULE (settings.configure() cannot be shared)."
            )
        allowed_hosts = list(settings.ALLOWED_HOSTS)
        if self.host not in allowed_hosts and "*" not in allowed_hosts:
            allowed_hosts.append(self.host)
        server_settings = {
            "DEBUG": settings.DEBUG,
            "ALLOWED_HOSTS": allowed_hosts,
            **self.settings,
        }
        for name, value in server_settings.items():
            try:
                json.dumps(value)
            except TypeError:
                raise ImproperlyConfigured(
                    f"Setting {name}={value!r} cannot be passed to the live server "
                    "process: only JSON values can"
                ) from None
        return json.dumps(
            {
                "settings_module": settings_module,
                "databases": _test_database_names(),
                "settings": server_settings,
                "static_wrapper": self.static_wrapper,
                "host": self.host,
                "port": self.requested_port,
                "ready_fd": ready_fd,
                "log_level": self.log_level,
                # A process that gave achannels the channels names gets a
                # server that does too (the settings may name "channels").
                "install_as_channels": installed(),
                "sys_path": _import_path(
                    [settings_module, str(getattr(settings, "ASGI_APPLICATION", ""))]
                ),
            }
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self.process is not None:
            raise RuntimeError("The live server is already running")
        read_fd, write_fd = os.pipe()
        try:
            env = {**os.environ, CONFIG_ENV: self._config(write_fd)}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "achannels.testing._live_server"],
                env=env,
                pass_fds=[write_fd],
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            self.port = self._wait_ready(read_fd)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_fd)

    def _wait_ready(self, read_fd: int) -> int:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        received = b""
        while not received.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"The live server was not ready within {self.startup_timeout}s"
                )
            readable, _, _ = select.select([read_fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(read_fd, 64)
            if not chunk:
                code = self.process.wait()
                raise RuntimeError(
                    f"The live server process exited with status {code} before it "
                    "was ready; its output is above"
                )
            received += chunk
        return int(received)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        process, self.process = self.process, None
        self.port = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ChannelsLiveServerTestCase(TransactionTestCase):
    """``TransactionTestCase`` with the project served by uvicorn in a
    subprocess for the whole class: connect real clients (``websockets``, a
    browser) to ``live_server_url`` and ``live_server_ws_url``.

    As in Channels: ``host`` (``"localhost"``), ``serve_static`` (static
    files through ``static_wrapper``, ``ASGIStaticFilesHandler`` by
    default), ``host`` is added to ``ALLOWED_HOSTS``, and an in-memory
    SQLite test database raises ``ImproperlyConfigured``. Beyond Channels:
    ``live_server_settings`` (JSON values) and the class's
    ``override_settings`` reach the server process.
    """

    host: ClassVar[str] = "localhost"
    serve_static: ClassVar[bool] = True
    static_wrapper: ClassVar[type | str | None] = STATIC_WRAPPER
    #: Extra settings for the server process (JSON values).
    live_server_settings: ClassVar[dict[str, Any]] = {}

    _port: ClassVar[int]
    _live_server: ClassVar[LiveServer]

    @property
    def live_server_url(self) -> str:
        """``http://host:port`` of the live server."""
        return self._live_server.url

    @property
    def live_server_ws_url(self) -> str:
        """``ws://host:port`` of the live server."""
        return self._live_server.ws_url

    @classmethod
    def setUpClass(cls) -> None:
        _test_database_names()
        super().setUpClass()
        modified = modify_settings(ALLOWED_HOSTS={"append": cls.host})
        modified.enable()
        cls.addClassCleanup(modified.disable)
        overridden = getattr(cls, "_overridden_settings", None) or {}
        server = LiveServer(
            cls.host,
            static_wrapper=cls.static_wrapper if cls.serve_static else None,
            settings={**overridden, **cls.live_server_settings},
        )
        server.start()
        cls.addClassCleanup(server.stop)
        cls._live_server = server
        assert server.port is not None
        cls._port = server.port

    @classmethod
    def _is_in_memory_db(cls, connection: Any) -> bool:
        """True for an in-memory SQLite connection (kept from Channels)."""
        return bool(connection.vendor == "sqlite" and connection.is_in_memory_db())
