"""Cheap, isolating copies of channel layer messages.

The in-memory layer hands receivers objects the sender can no longer reach.
``copy.deepcopy`` does that for anything but costs microseconds per message
even for ``{"type": "chat.message", "text": "hi"}``; channel layer messages
are almost always the msgpack-native types, where a copy only has to rebuild
containers (immutable leaves are shared, nobody can change them).
"""

from __future__ import annotations

import copy
from typing import Any

from .._types import Message

__all__ = ["copy_message", "is_flat", "snapshot_message"]

# Exactly these classes (not subclasses, which may carry mutable state) are
# shared instead of copied.
_IMMUTABLE: frozenset[type] = frozenset(
    {str, bytes, int, float, bool, complex, type(None)}
)


class _UncopyableError(Exception):
    """Carries the path to a value that cannot be copied up to the message."""

    def __init__(self, value: object, cause: BaseException) -> None:
        super().__init__(value, cause)
        self.value = value
        self.cause = cause
        #: Keys and indexes from ``root`` down to ``value``.
        self.path: list[object] = []
        #: The outermost container visited so far while unwinding.
        self.root = value

    def add_step(self, container: Any) -> None:
        """Prefix the path with the key of ``container`` that holds ``root``."""
        items = (
            container.items() if isinstance(container, dict) else enumerate(container)
        )
        for key, item in items:
            if item is self.root:
                self.path.insert(0, key)
                break
        self.root = container


def _copy_value(value: Any) -> Any:
    cls = value.__class__
    if cls in _IMMUTABLE:
        return value
    try:
        if cls is dict:
            return {key: _copy_value(item) for key, item in value.items()}
        if cls is list:
            return [_copy_value(item) for item in value]
        if cls is tuple:
            return tuple([_copy_value(item) for item in value])
    except _UncopyableError as error:
        # Record which key or index held the bad value, for the error message.
        error.add_step(value)
        raise
    try:
        return copy.deepcopy(value)
    except Exception as exc:  # deepcopy raises whatever __reduce__ raises
        raise _UncopyableError(value, exc) from exc


def _uncopyable(message: Message, error: _UncopyableError) -> TypeError:
    error.add_step(message)
    where = "".join(f"[{step!r}]" for step in error.path)
    return TypeError(
        f"Cannot copy message{where}: {type(error.value).__name__} value "
        f"{error.value!r:.80} ({error.cause}); send dict, list, tuple, str, "
        "bytes, int, float, bool or None values"
    )


def is_flat(message: Any) -> bool:
    """Return whether ``message`` is a plain dict whose values are all
    immutable, so that ``message.copy()`` is an isolating copy."""
    if message.__class__ is not dict:
        return False
    for value in message.values():
        if value.__class__ not in _IMMUTABLE:
            return False
    return True


def snapshot_message(message: Message) -> tuple[Message, bool]:
    """Return ``(copy, flat)``: a copy of ``message`` that shares no mutable
    object with it, and whether every value is immutable (so ``copy.copy()``
    of the snapshot is itself an isolating copy).

    Raises :class:`TypeError` naming the key path of a value that cannot be
    copied (or :class:`TypeError` for a message nested too deeply or in a
    cycle).
    """
    if message.__class__ is dict:
        for value in message.values():
            if value.__class__ not in _IMMUTABLE:
                break
        else:
            return message.copy(), True
        try:
            return {key: _copy_value(value) for key, value in message.items()}, False
        except _UncopyableError as error:
            raise _uncopyable(message, error) from error.cause
        except RecursionError:
            raise TypeError(
                "Cannot copy message: it nests too deeply or contains itself"
            ) from None
    try:
        return copy.deepcopy(message), False
    except Exception as exc:
        raise TypeError(
            f"Cannot copy message of type {type(message).__name__}: {exc}"
        ) from exc


def copy_message(snapshot: Message, flat: bool) -> Message:
    """Return another isolating copy of a snapshot from
    :func:`snapshot_message` (whose values are known to be copyable)."""
    if flat:
        return snapshot.copy()
    if snapshot.__class__ is dict:
        return {key: _copy_value(value) for key, value in snapshot.items()}
    return copy.deepcopy(snapshot)
