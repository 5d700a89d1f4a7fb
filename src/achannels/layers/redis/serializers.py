"""Message bytes on the wire, as channels_redis 4.x writes and reads them.

A message is packed (msgpack by default, or JSON), optionally encrypted with
Fernet under keys derived from ``symmetric_encryption_keys`` (SHA-256 of each
key, URL-safe base64, tried in order as by ``MultiFernet``), then prefixed
with random bytes that keep equal messages distinct in a sorted set.

The names are channels_redis' (``channels_redis.serializers`` under
``install_as_channels()``): a layer's ``serializer_format`` picks a class
from :data:`registry`, and a custom format is a subclass of
:class:`BaseMessageSerializer` (or any class with ``serialize`` and
``deserialize``) registered there before the layer is made.

Unlike channels_redis, a value the format cannot carry is reported on send
with the path of the offending key, a message that cannot be decrypted
raises :class:`DecryptionError`, and the layers refuse oversized messages
with :class:`~achannels.exceptions.MessageTooLarge` before they reach Redis.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import json
import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgpack

from ..._types import Message
from ...exceptions import MessageTooLarge
from .._base import shown, unsendable

__all__ = [
    "MAX_MESSAGE_SIZE",
    "BaseMessageSerializer",
    "DecryptionError",
    "JSONSerializer",
    "MessageSerializer",
    "MsgPackSerializer",
    "SerializerDoesNotExist",
    "SerializersRegistry",
    "local_copy",
    "pack_local",
    "registry",
    "serialize_within",
]

#: Redis refuses a bulk string above ``proto-max-bulk-len`` (512 MiB).
MAX_MESSAGE_SIZE = 512 * 1024 * 1024

_MAX_DEPTH = 256


class SerializerDoesNotExist(KeyError, ValueError):
    """Raised by :meth:`SerializersRegistry.get_serializer` for a format
    nobody registered: a ``KeyError`` as in channels_redis, and a
    ``ValueError`` (a bad ``serializer_format`` option)."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class DecryptionError(ValueError):
    """Raised when a message read from Redis cannot be decrypted with any of
    the configured keys, or is older than the encryption TTL allows."""


class MessageSerializer(Protocol):
    """What a layer needs of a serializer: any registered class gives it."""

    def serialize(self, message: Any) -> bytes: ...

    def deserialize(self, message: bytes) -> Any: ...


def _msgpack_dumps(message: Any) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def _msgpack_loads(data: bytes) -> Any:
    # strict_map_key=False: a nested dict with int keys must not make the
    # receiver fail after the sender succeeded.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack_local(message: Any) -> bytes:
    """Return ``message`` packed for in-process copies (msgpack, no crypto)."""
    return _msgpack_dumps(message)


def local_copy(data: bytes) -> Message:
    """Return a fresh message unpacked from :func:`pack_local` bytes."""
    message: Message = _msgpack_loads(data)
    return message


def _find_unserializable(
    value: object, dumps: Callable[[Any], Any], path: str, depth: int = 0
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


class BaseMessageSerializer(abc.ABC):
    """Packs with :meth:`as_bytes`, then encrypts, then prefixes; unpacks in
    reverse with :meth:`from_bytes`.

    ``expiry`` bounds the age of an encrypted message (``expiry + 10``
    seconds, as channels_redis); ``random_prefix_length`` random bytes
    precede each message (none when it is 0 or less). Raises
    :class:`ValueError` for a bare string of keys, or keys without the
    ``cryptography`` package.
    """

    #: The format's name in error messages.
    format = "custom"

    def __init__(
        self,
        symmetric_encryption_keys: Iterable[str | bytes] | None = None,
        random_prefix_length: int = 0,
        expiry: float | None = None,
    ) -> None:
        self.random_prefix_length = random_prefix_length
        self.expiry = expiry
        self.crypter: Any = None
        if symmetric_encryption_keys:
            if isinstance(symmetric_encryption_keys, (str, bytes)):
                raise ValueError(
                    "symmetric_encryption_keys must be a list of possible keys, "
                    "not a single string: use [key] (new keys first, old keys after)"
                )
            from cryptography.fernet import MultiFernet

            self.crypter = MultiFernet(
                [self.make_fernet(key) for key in symmetric_encryption_keys]
            )

    def make_fernet(self, key: str | bytes) -> Any:
        """Return the ``Fernet`` for one key: its SHA-256, URL-safe base64."""
        try:
            from cryptography.fernet import Fernet
        except ImportError:  # pragma: no cover - cryptography is in the redis extra
            raise ValueError(
                "symmetric_encryption_keys needs the 'cryptography' package: "
                "pip install 'achannels[redis]'"
            ) from None
        raw = key.encode("utf-8") if isinstance(key, str) else key
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(raw).digest()))

    @abc.abstractmethod
    def as_bytes(self, message: Any, *args: Any, **kwargs: Any) -> bytes:
        """Return ``message`` packed in this format."""

    @abc.abstractmethod
    def from_bytes(self, message: bytes, *args: Any, **kwargs: Any) -> Any:
        """Return the value packed in ``message``."""

    def serialize(self, message: Any) -> bytes:
        """Return the wire bytes of ``message``.

        Raises :class:`TypeError` naming the first key whose value the format
        cannot carry.
        """
        try:
            data = self.as_bytes(message)
        except (TypeError, ValueError, OverflowError) as error:
            raise self._unserializable(message, error) from error
        if self.crypter is not None:
            data = self.crypter.encrypt(data)
        if self.random_prefix_length > 0:
            data = random.randbytes(self.random_prefix_length) + data
        return data

    def deserialize(self, message: bytes) -> Any:
        """Return the value in the wire bytes ``message``.

        Raises :class:`DecryptionError` when encryption is on and the bytes
        were not encrypted with one of the keys (or are too old), and
        :class:`ValueError` when they are not in this format.
        """
        data = message
        if self.random_prefix_length > 0:
            data = data[self.random_prefix_length :]
        if self.crypter is not None:
            from cryptography.fernet import InvalidToken

            ttl = None if self.expiry is None else int(self.expiry) + 10
            try:
                data = self.crypter.decrypt(data, ttl)
            except InvalidToken:
                raise DecryptionError(
                    "Message could not be decrypted with any of the "
                    "symmetric_encryption_keys (wrong key, tampered or expired)"
                ) from None
        try:
            return self.from_bytes(data)
        except Exception as error:
            raise ValueError(f"Undecodable {self.format} message: {error}") from error

    def _unserializable(self, message: object, error: BaseException) -> Exception:
        found = _find_unserializable(message, self.as_bytes, "message")
        if found is None:
            return TypeError(f"Cannot serialize message with {self.format}: {error}")
        path, value, reason = found
        return unsendable(path, value, reason, self.format)


class MsgPackSerializer(BaseMessageSerializer):
    """msgpack, the default format (``serializer_format="msgpack"``)."""

    format = "msgpack"

    def as_bytes(self, message: Any, *args: Any, **kwargs: Any) -> bytes:
        return _msgpack_dumps(message)

    def from_bytes(self, message: bytes, *args: Any, **kwargs: Any) -> Any:
        return _msgpack_loads(message)


class JSONSerializer(BaseMessageSerializer):
    """UTF-8 JSON (``serializer_format="json"``)."""

    format = "json"

    def as_bytes(self, message: Any, *args: Any, **kwargs: Any) -> bytes:
        return json.dumps(message, *args, **kwargs).encode("utf-8")

    def from_bytes(self, message: bytes, *args: Any, **kwargs: Any) -> Any:
        return json.loads(message, *args, **kwargs)


class SerializersRegistry:
    """Serializer classes by format name."""

    def __init__(self) -> None:
        self._registry: dict[str, Any] = {}

    def register_serializer(self, format: str, serializer_class: type) -> None:
        """Make ``serializer_format=format`` use ``serializer_class``
        (replacing any class registered for it).

        Raises ``AssertionError``, as channels_redis does, when the class is
        neither a :class:`BaseMessageSerializer` nor has ``serialize`` and
        ``deserialize``.
        """
        assert isinstance(serializer_class, type) and (
            issubclass(serializer_class, BaseMessageSerializer)
            or (
                hasattr(serializer_class, "serialize")
                and hasattr(serializer_class, "deserialize")
            )
        ), (
            f"serializer_class {serializer_class!r} must be a class with "
            "serialize() and deserialize(), or a subclass of "
            "BaseMessageSerializer"
        )
        self._registry[format] = serializer_class

    def get_serializer(self, format: str, *args: Any, **kwargs: Any) -> Any:
        """Return a new serializer of ``format``, made with these arguments.

        Raises :class:`SerializerDoesNotExist` for a format nobody registered.
        """
        try:
            serializer_class = self._registry[format]
        except KeyError:
            known = ", ".join(repr(name) for name in self._registry)
            raise SerializerDoesNotExist(
                f"Unknown serializer_format {format!r}: use one of {known}, or "
                "register a serializer class for it with "
                "achannels.layers.redis.serializers.registry.register_serializer()"
            ) from None
        return serializer_class(*args, **kwargs)


#: The formats every layer knows; register custom ones here.
registry = SerializersRegistry()
registry.register_serializer("json", JSONSerializer)
registry.register_serializer("msgpack", MsgPackSerializer)


def serialize_within(
    serializer: MessageSerializer, message: Any, max_message_size: int
) -> bytes:
    """Return ``serializer``'s bytes for ``message``.

    Raises :class:`~achannels.exceptions.MessageTooLarge` when they exceed
    ``max_message_size``.
    """
    data = serializer.serialize(message)
    if len(data) > max_message_size:
        raise MessageTooLarge(
            f"Message is {len(data)} bytes on the wire, over the limit of "
            f"{max_message_size} bytes: send a reference to the data "
            "(a key, a URL) instead of the data itself"
        )
    return data
