"""``manage.py runserver`` on uvicorn: HTTP and WebSockets, with autoreload.

Replaces Django's (and Daphne's) ``runserver`` when ``"achannels"`` comes
before ``"django.contrib.staticfiles"`` in ``INSTALLED_APPS``. Arguments,
autoreload, system checks, the migrations warning, static files in DEBUG and
the start-up banner are Django's; the server is uvicorn serving the
project's ``ASGI_APPLICATION``.
"""

from __future__ import annotations

import atexit
import errno
import importlib.util
import os
import socket
import sys
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.management.commands.runserver import (
    Command as StaticfilesRunserverCommand,
)
from django.core.management import CommandError
from django.db import connections
from django.utils import autoreload

from ..._logging import configure_for_runserver
from ..._types import ASGIApp

if TYPE_CHECKING:
    import uvicorn

__all__ = ["Command"]

_BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


class Command(StaticfilesRunserverCommand):
    """Django's ``runserver`` with uvicorn in place of the WSGI server."""

    help = (
        "Starts a development server (uvicorn) for the project's ASGI_APPLICATION: "
        "HTTP and WebSockets, with autoreload and static files in DEBUG."
    )
    #: Seconds uvicorn waits for open connections after CONTROL-C.
    shutdown_timeout = 3

    # Set by Django's runserver.handle() from the addrport argument.
    addr: str
    port: str
    use_ipv6: bool
    _raw_ipv6: bool

    def handle(self, *args: Any, **options: Any) -> None:
        if importlib.util.find_spec("uvicorn") is None:
            raise CommandError(
                "runserver needs uvicorn: pip install 'achannels[django]' (or "
                "'uvicorn[standard]')."
            )
        if not getattr(settings, "ASGI_APPLICATION", None):
            raise CommandError(
                "You have not set ASGI_APPLICATION, which is needed to run the "
                "server: set it to your application, e.g. "
                "ASGI_APPLICATION = 'myproject.asgi.application'."
            )
        super().handle(*args, **options)

    def get_handler(self, *args: Any, **options: Any) -> ASGIApp:  # type: ignore[override]
        """Return the ``ASGI_APPLICATION``, wrapped to serve static files
        (HTTP only) when staticfiles is installed and DEBUG (or
        ``--insecure``) is on, unless ``--nostatic``."""
        from ...routing import get_default_application

        application: ASGIApp = get_default_application()
        if (
            apps.is_installed("django.contrib.staticfiles")
            and options.get("use_static_handler", True)
            and (settings.DEBUG or options.get("insecure_serving", False))
        ):
            from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

            # Serves STATIC_URL for HTTP; every other scope goes to the app.
            application = cast(ASGIApp, ASGIStaticFilesHandler(cast(Any, application)))
        return application

    def inner_run(self, *args: Any, **options: Any) -> None:
        # Runs in the reloader's child process, on its main thread with
        # --noreload and on a daemon thread otherwise.
        autoreload.raise_last_exception()
        shutdown_message = options.get("shutdown_message", "")
        if not options.get("skip_checks", False):
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        # The migrations check opened connections in this thread; the server
        # must not inherit them.
        for connection in connections.all(initialized_only=True):
            connection.close()
        application = self.get_handler(*args, **options)
        configure_for_runserver(settings.DEBUG)
        try:
            sock = self._bind()
        except OSError as exc:
            self.stderr.write(f"Error: {_BIND_ERRORS.get(exc.errno or 0, exc)}")
            # sys.exit() would only end this thread under the reloader.
            os._exit(1)
        self._print_banner(sock.getsockname()[1])
        self._warn_without_websockets()
        try:
            self._serve(application, sock, options)
        except KeyboardInterrupt:
            if shutdown_message:
                self.stdout.write(shutdown_message)
            sys.exit(0)

    def _bind(self) -> socket.socket:
        # Bound here rather than by uvicorn so that a busy port gets Django's
        # message and "port 0" shows the port actually chosen.
        family = socket.AF_INET6 if self.use_ipv6 else socket.AF_INET
        address = "0.0.0.0" if self.addr == "0" else self.addr
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, int(self.port)))
        except OSError:
            sock.close()
            raise
        return sock

    def _serve(
        self, application: ASGIApp, sock: socket.socket, options: dict[str, Any]
    ) -> None:
        import uvicorn

        config = uvicorn.Config(
            application,
            lifespan="auto",
            log_level="info",
            use_colors=False if options.get("no_color") else None,
            timeout_graceful_shutdown=self.shutdown_timeout,
        )
        server = uvicorn.Server(config)
        serving = threading.current_thread()
        if serving is not threading.main_thread():
            # Under the reloader this is a daemon thread and a reload is the
            # main thread's sys.exit(3). Left running, uvicorn's event loop
            # (uvloop's C code) meets the interpreter's teardown and can
            # crash the child (SIGSEGV), which ends the reloader itself.
            # Exit functions run while the interpreter is still whole.
            atexit.register(self._stop_before_exit, server, serving)
        server.run(sockets=[sock])

    def _stop_before_exit(
        self, server: uvicorn.Server, serving: threading.Thread
    ) -> None:
        server.should_exit = True
        # uvicorn's graceful shutdown is bounded by shutdown_timeout; the
        # margin covers the lifespan shutdown after it.
        serving.join(timeout=self.shutdown_timeout + 2)

    def _print_banner(self, port: int) -> None:
        import uvicorn

        if self._raw_ipv6:
            addr = f"[{self.addr}]"
        elif self.addr == "0":
            addr = "0.0.0.0"
        else:
            addr = self.addr
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        now = datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings "
            f"{settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/uvicorn version {uvicorn.__version__} development "
            f"server at {self.protocol}://{addr}:{port}/\n"
            f"Quit the server with {quit_command}.\n"
        )
        self.stdout.flush()

    def _warn_without_websockets(self) -> None:
        if not any(
            importlib.util.find_spec(name) for name in ("websockets", "wsproto")
        ):
            self.stderr.write(
                "WARNING: neither websockets nor wsproto is installed, so uvicorn "
                "refuses WebSocket connections: pip install 'uvicorn[standard]'."
            )
