"""Cheap, isolating copies of channel layer messages, checked for msgpack.

The in-memory layer hands receivers objects the sender can no longer reach.
``copy.deepcopy`` does that for anything but costs microseconds per message
even for ``{"type": "chat.message", "text": "hi"}``; channel layer messages
are almost always the msgpack-native types, where a copy only has to rebuild
containers (immutable leaves are shared, nobody can change them).

The copy is also where a value msgpack cannot carry (a set, a datetime, a
model instance) is refused, with the Redis layers' error: code that works on
the in-memory layer then works on Redis too, and the error names the key at
the ``send``, not in the receiving handler later. It costs no pass of its
own: the copy already looks at every value's class.
"""

from __future__ import annotations

import copy
from typing import Any

from .._types import Message
from ._base import shown, unsendable

__all__ = ["copy_message", "is_flat", "snapshot_message"]

# Exactly these classes (not subclasses, which may carry mutable state) are
# shared instead of copied; msgpack carries each of them.
_IMMUTABLE: frozenset[type] = frozenset({str, bytes, int, float, bool, type(None)})

# What msgpack carries, subclasses included (an IntEnum, an OrderedDict):
# those are deep-copied, keeping their class, as Channels' layer does.
_CARRIED = (str, bytes, bytearray, int, float, bool, type(None), list, tuple, dict)


class _BadValueError(Exception):
    """Carries the path to a bad value up to the message: one that cannot be
    copied (``cause`` set) or that msgpack cannot carry."""

    def __init__(
        self, value: object, cause: BaseException | None = None, key: bool = False
    ) -> None:
        super().__init__(value, cause)
        self.value = value
        self.cause = cause
        #: The value is a dict key.
        self.key = key
        #: Keys and indexes from ``root`` down to ``value``.
        self.path: list[object] = []
        #: The outermost container visited so far while unwinding.
        self.root = value

    def add_step(self, container: Any) -> None:
        """Prefix the path with the key of ``container`` that holds ``root``."""
        if self.key and self.root is self.value:
            self.root = container  # a bad key: the path ends at its dict
            return
        items = (
            container.items() if isinstance(container, dict) else enumerate(container)
        )
        for key, item in items:
            if item is self.root:
                self.path.insert(0, key)
                break
        self.root = container


def _check_key(key: Any) -> Any:
    """Return ``key`` if msgpack can carry it as a map key."""
    if key.__class__ in _IMMUTABLE:
        return key
    if isinstance(key, tuple):
        for part in key:
            _check_key(part)
        return key
    if isinstance(key, (str, bytes, int, float)):
        return key
    raise _BadValueError(key, key=True)


def _copy_value(value: Any) -> Any:
    cls = value.__class__
    if cls in _IMMUTABLE:
        return value
    try:
        if cls is dict:
            return {
                key if key.__class__ is str else _check_key(key): _copy_value(item)
                for key, item in value.items()
            }
        if cls is list:
            return [_copy_value(item) for item in value]
        if cls is tuple:
            return tuple([_copy_value(item) for item in value])
    except _BadValueError as error:
        # Record which key or index held the bad value, for the error message.
        error.add_step(value)
        raise
    if not isinstance(value, _CARRIED):
        raise _BadValueError(value)
    try:
        return copy.deepcopy(value)
    except Exception as exc:  # deepcopy raises whatever __reduce__ raises
        raise _BadValueError(value, exc) from exc


def _msgpack_reason(value: object) -> str:
    """What msgpack says about ``value`` (its words, where it is installed)."""
    try:
        import msgpack
    except ImportError:
        return f"can not serialize {type(value).__name__!r} object"
    try:
        msgpack.packb(value, use_bin_type=True)
    except Exception as exc:
        return str(exc)
    return f"can not serialize {type(value).__name__!r} object"


def _bad_value(message: Message, error: _BadValueError) -> TypeError:
    error.add_step(message)
    where = "message" + "".join(f"[{step!r}]" for step in error.path)
    if error.cause is not None:
        return TypeError(
            f"Cannot copy {where}: {type(error.value).__name__} value "
            f"{error.value!r:.80} ({error.cause}); send dict, list, tuple, str, "
            "bytes, int, float, bool or None values"
        )
    if error.key:
        where = f"{where} key {shown(error.value)}"
    return unsendable(where, error.value, _msgpack_reason(error.value), "msgpack")


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

    Raises :class:`TypeError` naming the key path of a value msgpack cannot
    carry (the Redis layers' message) or that cannot be copied, and for a
    message nested too deeply or in a cycle.
    """
    if message.__class__ is dict:
        # Keys are not checked here: a message's own keys are names.
        for value in message.values():
            if value.__class__ not in _IMMUTABLE:
                break
        else:
            return message.copy(), True
        try:
            return {key: _copy_value(value) for key, value in message.items()}, False
        except _BadValueError as error:
            raise _bad_value(message, error) from error.cause
        except RecursionError:
            raise TypeError(
                "Cannot copy message: it nests too deeply or contains itself"
            ) from None
    if not isinstance(message, dict):
        raise unsendable("message", message, _msgpack_reason(message), "msgpack")
    try:
        copied = _copy_value(message)
    except _BadValueError as error:
        raise _bad_value(message, error) from error.cause
    except RecursionError:
        raise TypeError(
            "Cannot copy message: it nests too deeply or contains itself"
        ) from None
    return copied, False


def copy_message(snapshot: Message, flat: bool) -> Message:
    """Return another isolating copy of a snapshot from
    :func:`snapshot_message` (whose values are known to be copyable)."""
    if flat:
        return snapshot.copy()
    if snapshot.__class__ is dict:
        return {key: _copy_value(value) for key, value in snapshot.items()}
    return copy.deepcopy(snapshot)
