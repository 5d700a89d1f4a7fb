"""The server process of ``achannels.testing.live.LiveServer``.

Run as ``python -m achannels.testing._live_server`` with the JSON
configuration in the environment variable named by ``CONFIG_ENV``: it points
Django at the test databases the test process set up, applies the settings
the test process runs with, and serves ``ASGI_APPLICATION`` with uvicorn on a
port it reports through an inherited pipe once it accepts connections.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import warnings
from typing import Any

__all__ = ["CONFIG_ENV", "main"]

CONFIG_ENV = "ACHANNELS_LIVE_SERVER_CONFIG"


def _configure_django(config: dict[str, Any]) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = config["settings_module"]
    from django.conf import settings

    # Before django.setup(), so no connection is opened to the real database.
    for alias, name in config["databases"].items():
        settings.DATABASES[alias]["NAME"] = name
    for key, value in config["settings"].items():
        setattr(settings, key, value)
    import django

    django.setup()


def _application(config: dict[str, Any]) -> Any:
    from ..routing import get_default_application

    application = get_default_application()
    wrapper_path = config["static_wrapper"]
    if wrapper_path:
        module_name, _, name = wrapper_path.rpartition(".")
        application = getattr(importlib.import_module(module_name), name)(application)
    return application


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def main() -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's graceful shutdown)."""
    config = json.loads(os.environ.pop(CONFIG_ENV))
    # The test process's order, before this process's own entries.
    sys.path[:] = list(dict.fromkeys([*config["sys_path"], *sys.path]))
    if config["install_as_channels"]:
        from .._install import ChannelsInstalledWarning, install_as_channels

        with warnings.catch_warnings():
            # The test process made this choice, and warned if it had to.
            warnings.simplefilter("ignore", ChannelsInstalledWarning)
            install_as_channels()
    _configure_django(config)
    application = _application(config)
    sock = _bind(config["host"], config["port"])
    ready_fd: int = config["ready_fd"]

    import uvicorn

    class ReportingServer(uvicorn.Server):
        # Readiness is reported, not guessed: the port goes to the test
        # process once uvicorn's listener is up.
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                os.write(ready_fd, f"{sock.getsockname()[1]}\n".encode())
                os.close(ready_fd)

    server = ReportingServer(
        uvicorn.Config(
            application,
            lifespan="auto",
            log_level=config["log_level"],
            timeout_graceful_shutdown=2,
        )
    )
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
