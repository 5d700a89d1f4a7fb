"""``manage.py runworker CHANNEL... [--layer ALIAS]``: run the project's
``ASGI_APPLICATION`` for messages sent to the named channels."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management import BaseCommand, CommandError
from django.core.management.base import CommandParser

from ... import DEFAULT_CHANNEL_LAYER
from ...layers import get_channel_layer
from ...routing import get_default_application
from ...worker import Worker

__all__ = ["Command"]

logger = logging.getLogger("django.channels.worker")


class Command(BaseCommand):
    """Run a ``Worker`` on the given channels until SIGINT or SIGTERM."""

    help = (
        "Runs the ASGI_APPLICATION for messages sent to the given channels "
        "(route them with ChannelNameRouter under the 'channel' type)."
    )
    leave_locale_alone = True
    #: The worker class to run; subclass the command to change it.
    worker_class = Worker

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--layer",
            action="store",
            dest="layer",
            default=DEFAULT_CHANNEL_LAYER,
            help="Channel layer alias to use, if not the default.",
        )
        parser.add_argument("channels", nargs="+", help="Channels to listen on.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options.get("verbosity", 1)
        self.channel_layer = get_channel_layer(options["layer"])
        if self.channel_layer is None:
            raise CommandError(
                f"You do not have a channel layer {options['layer']!r} configured: "
                "add it to the CHANNEL_LAYERS setting."
            )
        # Channels logs this line (Django shows it in DEBUG); print it
        # ourselves only where no handler would, so it appears once.
        message = f"Running worker for channels {options['channels']}"
        if self.verbosity and not _would_show(logger, logging.INFO):
            self.stdout.write(f"{message} on layer {options['layer']!r}")
            self.stdout.flush()
        logger.info("Running worker for channels %s", options["channels"])
        worker = self.worker_class(
            application=get_default_application(),
            channels=options["channels"],
            channel_layer=self.channel_layer,
        )
        worker.run()


def _would_show(logger: logging.Logger, level: int) -> bool:
    """Whether a record at ``level`` reaches a handler that accepts it."""
    if not logger.isEnabledFor(level):
        return False
    record = logger.makeRecord(logger.name, level, __file__, 0, "", (), None)
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if level >= handler.level and handler.filter(record):
                return True
        if not current.propagate:
            break
        current = current.parent
    return False
