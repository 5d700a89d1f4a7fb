"""Notes that tell a newcomer what went wrong, attached to the exception.

The server logs an application's exception once, with its traceback; a note
added to the exception (PEP 678) is printed with that traceback, so the one
log line also names the consumer, the path and the fix. Python 3.10 has no
notes: the explanation is logged on its own line instead.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = [
    "LAYER_METHODS",
    "explain",
    "explain_missing_layer",
    "how_to_configure_layer",
]

logger = logging.getLogger("achannels")

#: What consumers call on ``self.channel_layer``.
LAYER_METHODS = frozenset(
    {"send", "receive", "new_channel", "group_add", "group_discard", "group_send"}
)


def explain(exc: BaseException, note: str) -> None:
    """Attach ``note`` to ``exc`` (logged beside it where notes do not exist)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        if note not in getattr(exc, "__notes__", ()):
            add_note(note)
    else:  # Python 3.10
        logger.error("%s: %s", type(exc).__name__, note)


def explain_missing_layer(consumer: Any, exc: BaseException) -> None:
    """Explain ``'NoneType' object has no attribute 'group_add'`` (and the
    like) raised because ``consumer`` has no channel layer."""
    if (
        isinstance(exc, AttributeError)
        and getattr(consumer, "channel_layer", None) is None
        and exc.obj is None
        and exc.name in LAYER_METHODS
    ):
        explain(
            exc,
            f"{type(consumer).__qualname__}.channel_layer is None: "
            + how_to_configure_layer(consumer.channel_layer_alias),
        )


def how_to_configure_layer(alias: str) -> str:
    return (
        f"no channel layer is configured for alias {alias!r}: add it to "
        "CHANNEL_LAYERS in your Django settings, e.g. CHANNEL_LAYERS = "
        '{"default": {"BACKEND": "achannels.layers.InMemoryChannelLayer"}}, '
        "or without Django call achannels.layers.channel_layers.configure({...}) "
        "with the same dict"
    )
