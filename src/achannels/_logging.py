"""A format for achannels' log lines when nobody configured logging.

Under uvicorn, hypercorn or granian, only the servers' own loggers have
handlers, so achannels' warnings and errors went to Python's last-resort
handler: the bare message, with no level, time or logger name. At lifespan
startup (and in ``runserver``), a handler on the ``achannels`` logger gives
them all three. It steps aside as soon as the application configures
logging itself (a handler on the root logger or on ``achannels``), and, like
the last resort, shows WARNING and above.
"""

from __future__ import annotations

import logging
import sys

__all__ = [
    "FORMAT",
    "FallbackHandler",
    "configure_for_runserver",
    "install_fallback_handler",
]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes achannels' records to stderr while no other handler would."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # logging was configured since: the root handler shows it
        super().emit(record)


def install_fallback_handler() -> None:
    """Give achannels' log lines a format unless logging is configured."""
    logger = logging.getLogger("achannels")
    if logger.hasHandlers():
        return  # configured (dictConfig, basicConfig, Django's LOGGING)
    logger.addHandler(FallbackHandler())


def configure_for_runserver(debug: bool) -> None:
    """Show achannels' log lines under ``runserver`` as Django shows its own
    (``DEFAULT_LOGGING``: a console handler, INFO and above in DEBUG), with
    the time format of Django's server log. A project whose ``LOGGING``
    already reaches the ``achannels`` logger keeps its own setup."""
    logger = logging.getLogger("achannels")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.INFO if debug else logging.WARNING)
    handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] %(levelname)s %(name)s: %(message)s",
            datefmt="%d/%b/%Y %H:%M:%S",
        )
    )
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO if debug else logging.WARNING)
