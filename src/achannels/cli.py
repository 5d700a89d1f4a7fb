"""The ``achannels`` command line.

``achannels worker APP CHANNEL... [--layer ALIAS]`` runs a ``Worker`` without
Django: ``APP`` is ``module:attribute`` (or ``module.attribute``) and the
module configures its channel layers with ``channel_layers.configure()``.
With ``DJANGO_SETTINGS_MODULE`` set, Django is set up first and its
``CHANNEL_LAYERS`` are used, as with ``manage.py runworker``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import DEFAULT_CHANNEL_LAYER, __version__
from .exceptions import InvalidChannelLayerError

__all__ = ["main"]


class _UsageError(Exception):
    """A command-line argument names something that cannot be used."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="achannels",
        description="achannels: Channels consumers, routing and layers on asyncio.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser(
        "worker",
        help="run an application for messages sent to named channels",
        description="Run APP for messages sent to each CHANNEL on the channel "
        "layer, one application instance per channel, until SIGINT/SIGTERM.",
    )
    worker.add_argument(
        "app", metavar="APP", help="the application, as module:attribute"
    )
    worker.add_argument(
        "channels", metavar="CHANNEL", nargs="+", help="channel names to listen on"
    )
    worker.add_argument(
        "--layer",
        default=DEFAULT_CHANNEL_LAYER,
        help="channel layer alias to use (default: %(default)s)",
    )
    worker.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="logging level (default: %(default)s)",
    )
    return parser


def _load_application(path: str) -> Any:
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise _UsageError(
            f"APP must look like 'module:attribute' (e.g. 'myapp.asgi:application'), "
            f"got {path!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"Cannot import module {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise _UsageError(
            f"Module {module_name!r} has no attribute {attribute!r}"
        ) from None


def _setup_django_if_configured() -> None:
    # Only when the user points at a settings module: without it, this
    # command must not import Django at all.
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup()


def _worker(options: argparse.Namespace) -> int:
    from .layers import get_channel_layer
    from .worker import Worker

    # Like uvicorn, find the application (and Django settings) in the current
    # directory.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _setup_django_if_configured()
    application = _load_application(options.app)
    layer = get_channel_layer(options.layer)
    if layer is None:
        raise _UsageError(
            f"No channel layer {options.layer!r} is configured: call "
            "achannels.layers.channel_layers.configure({...}) in the application "
            "module, or set CHANNEL_LAYERS in Django settings"
        )
    Worker(application, options.channels, layer).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``achannels`` command with ``argv`` (default: ``sys.argv[1:]``);
    return the exit status (2 for a usage error, as argparse does)."""
    options = _parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _worker(options)
    except _UsageError as exc:
        print(f"achannels {options.command}: error: {exc}", file=sys.stderr)
        return 2
    except InvalidChannelLayerError as exc:
        print(f"achannels {options.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
