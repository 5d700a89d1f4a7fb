"""Message bytes on the wire, as channels_redis 4.x writes and reads them.

A message is packed (msgpack by default, or JSON), optionally encrypted with
Fernet under keys derived from ``symmetric_encryption_keys`` (SHA-256 of each
key, URL-safe base64, tried in order as by ``MultiFernet``), then prefixed
with random bytes that keep equal messages distinct in a sorted set.

Unlike channels_redis, a value the format cannot carry is reported on send
with the path of the offending key, and oversized messages raise
:class:`~achannels.exceptions.MessageTooLarge` before they reach Redis.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from ..._types import Message
from ...exceptions import MessageTooLarge
from .._base import shown, unsendable

__all__ = [
    "MAX_MESSAGE_SIZE",
    "DecryptionError",
    "MessageSerializer",
    "local_copy",
    "pack_local",
]

#: Redis refuses a bulk string above ``proto-max-bulk-len`` (512 MiB).
MAX_MESSAGE_SIZE = 512 * 1024 * 1024

_FORMATS = ("msgpack", "json")
_MAX_DEPTH = 256


class DecryptionError(ValueError):
    """Raised when a message read from Redis cannot be decrypted with any of
    the configured keys, or is older than the encryption TTL allows."""


def _msgpack_dumps(message: Any) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def _msgpack_loads(data: bytes) -> Any:
    # strict_map_key=False: a nested dict with int keys must not make the
    # receiver fail after the sender succeeded.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _json_dumps(message: Any) -> bytes:
    return json.dumps(message).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


def pack_local(message: Any) -> bytes:
    """Return ``message`` packed for in-process copies (msgpack, no crypto)."""
    return _msgpack_dumps(message)


def local_copy(data: bytes) -> Message:
    """Return a fresh message unpacked from :func:`pack_local` bytes."""
    message: Message = _msgpack_loads(data)
    return message


def _find_unserializable(
    value: object, dumps: Callable[[Any], bytes], path: str, depth: int = 0
) -> tuple[str, object, BaseException] | None:
    """Return ``(path, value, error)`` of the first part ``dumps`` rejects."""
    if depth > _MAX_DEPTH:
        return path, value, ValueError("nested too deeply, or contains itself")
    items: Iterable[tuple[str, object]]
    if isinstance(value, dict):
        for key in value:
            try:
                dumps({key: None})
            except (TypeError, ValueError, OverflowError) as error:
                return f"{path} key {shown(key)}", key, error
        items = ((f"{path}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        try:
            dumps(value)
        except (TypeError, ValueError, OverflowError) as error:
            return path, value, error
        return None
    for item_path, item in items:
        found = _find_unserializable(item, dumps, item_path, depth + 1)
        if found is not None:
            return found
    return None


class MessageSerializer:
    """Turns messages into the bytes channels_redis stores, and back.

    ``serializer_format`` is ``"msgpack"`` or ``"json"``; ``expiry`` bounds the
    age of an encrypted message (``expiry + 10`` seconds, as channels_redis);
    ``random_prefix_length`` random bytes precede each message.
    Raises :class:`ValueError` for an unknown format or a bare string of keys.
    """

    def __init__(
        self,
        serializer_format: str = "msgpack",
        *,
        symmetric_encryption_keys: Iterable[str | bytes] | None = None,
        random_prefix_length: int = 0,
        expiry: float | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        if serializer_format == "msgpack":
            self._dumps, self._loads = _msgpack_dumps, _msgpack_loads
        elif serializer_format == "json":
            self._dumps, self._loads = _json_dumps, _json_loads
        else:
            raise ValueError(
                f"Unknown serializer_format {serializer_format!r}: use one of "
                f"{', '.join(repr(name) for name in _FORMATS)}"
            )
        self.format = serializer_format
        self.random_prefix_length = random_prefix_length
        self.max_message_size = max_message_size
        self._ttl = None if expiry is None else int(expiry) + 10
        self._crypter = _make_crypter(symmetric_encryption_keys)

    @property
    def encrypted(self) -> bool:
        """Whether messages are encrypted."""
        return self._crypter is not None

    def serialize(self, message: Message) -> bytes:
        """Return the wire bytes of ``message``.

        Raises :class:`TypeError` naming the first key whose value the format
        cannot carry, and :class:`~achannels.exceptions.MessageTooLarge` when
        the bytes exceed ``max_message_size``.
        """
        try:
            data = self._dumps(message)
        except (TypeError, ValueError, OverflowError) as error:
            raise self._unserializable(message, error) from error
        if self._crypter is not None:
            data = self._crypter.encrypt(data)
        if self.random_prefix_length:
            data = random.randbytes(self.random_prefix_length) + data
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"Message is {len(data)} bytes on the wire, over the limit of "
                f"{self.max_message_size} bytes: send a reference to the data "
                "(a key, a URL) instead of the data itself"
            )
        return data

    def deserialize(self, data: bytes) -> Message:
        """Return the message in ``data``.

        Raises :class:`DecryptionError` when encryption is on and ``data`` was
        not encrypted with one of the keys (or is too old), and
        :class:`ValueError` when the bytes are not a message.
        """
        if self.random_prefix_length:
            data = data[self.random_prefix_length :]
        if self._crypter is not None:
            from cryptography.fernet import InvalidToken

            try:
                data = self._crypter.decrypt(data, self._ttl)
            except InvalidToken:
                raise DecryptionError(
                    "Message could not be decrypted with any of the "
                    "symmetric_encryption_keys (wrong key, tampered or expired)"
                ) from None
        try:
            message = self._loads(data)
        except Exception as error:
            raise ValueError(f"Undecodable {self.format} message: {error}") from error
        if not isinstance(message, dict):
            raise ValueError(
                f"Decoded a {type(message).__name__} where a message dict was expected"
            )
        return message

    def _unserializable(self, message: object, error: BaseException) -> Exception:
        found = _find_unserializable(message, self._dumps, "message")
        if found is None:
            return TypeError(f"Cannot serialize message with {self.format}: {error}")
        path, value, reason = found
        return unsendable(path, value, reason, self.format)


def _make_crypter(keys: Iterable[str | bytes] | None) -> Any:
    """Return a ``MultiFernet`` for ``keys``, or ``None`` without keys."""
    if not keys:
        return None
    if isinstance(keys, (str, bytes)):
        raise ValueError(
            "symmetric_encryption_keys must be a list of possible keys, not a "
            "single string: use [key] (new keys first, old keys after)"
        )
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:  # pragma: no cover - cryptography is in the redis extra
        raise ValueError(
            "symmetric_encryption_keys needs the 'cryptography' package: "
            "pip install 'achannels[redis]'"
        ) from None
    fernets = []
    for key in keys:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest())))
    return MultiFernet(fernets)
