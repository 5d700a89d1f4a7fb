"""The channel layer base class: name and message rules, capacities, the API.

Every achannels layer (in-memory, Redis, pub/sub) inherits from
:class:`BaseChannelLayer` so that users get the same validation errors and the
same ``channel_capacity`` semantics whichever backend they configure.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from .._errors import InvalidChannelNames, MessageNotDict
from .._types import Message

__all__ = [
    "BaseChannelLayer",
    "CapacityPatterns",
    "ChannelCapacity",
    "KnownNames",
    "shown",
    "unsendable",
]

#: What ``channel_capacity`` accepts: glob strings (``"websocket.send*"``) or
#: compiled regular expressions mapped to a capacity, as a mapping or as an
#: ordered sequence of pairs (the first matching pattern wins).
ChannelCapacity: TypeAlias = (
    Mapping[str, int]
    | Mapping[re.Pattern[str], int]
    | Mapping[str | re.Pattern[str], int]
    | Iterable[tuple[str | re.Pattern[str], int]]
)
#: ``channel_capacity`` after :meth:`BaseChannelLayer.compile_capacities`.
CapacityPatterns: TypeAlias = list[tuple[re.Pattern[str], int]]

_NAME_CHARS = "ASCII letters, digits, '-', '_' or '.'"
# Anchored as Channels' are, so a subclass calling .match() gets the same
# answer as .fullmatch(); re.ASCII keeps ``\w``/``\d`` to ASCII, and ``\Z``
# refuses the trailing newline that Channels' ``$`` let through by accident.
_CHANNEL_NAME = re.compile(r"^[a-zA-Z\d\-_.]+(![\w\-.]*)?\Z", re.ASCII)
_GROUP_NAME = re.compile(r"^[a-zA-Z\d\-_.]+\Z", re.ASCII)


class KnownNames(set[str]):
    """Names that already passed validation.

    The same few channel and group names come back on every message, and a
    set lookup is far cheaper than the regex, so hot paths write
    ``if name.__class__ is not str or name not in known: known.learn(name)``.
    Bounded: it starts over once it holds ``limit`` names.
    """

    def __init__(self, validate: Callable[[Any], object], limit: int = 10_000) -> None:
        super().__init__()
        self._validate = validate
        self._limit = limit

    def learn(self, name: object) -> None:
        """Validate ``name`` (raising what the validator raises) and remember it."""
        self._validate(name)
        assert isinstance(name, str)
        if len(self) >= self._limit:
            self.clear()
        self.add(name)


def shown(value: object) -> str:
    """Return ``repr(value)`` cut to a readable length for error messages."""
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:100]}...({len(text)} chars)"


def unsendable(path: str, value: object, reason: object, fmt: str) -> TypeError:
    """The error every layer raises for a value its wire format cannot carry:
    ``path`` is where it sits (``message['data'][1]``), ``reason`` what the
    serializer said."""
    return TypeError(
        f"Cannot send {path}: {type(value).__name__} {shown(value)} cannot "
        f"be serialized with {fmt} ({reason}); use str, bytes, int, "
        "float, bool, None, lists and dicts"
    )


class BaseChannelLayer:
    """Common behaviour of channel layers; subclass it to write a backend.

    ``expiry`` is how many seconds a message waits for a receiver, ``capacity``
    how many messages a channel holds before ``send`` raises
    :class:`~achannels.exceptions.ChannelFull`, and ``channel_capacity`` maps
    channel name patterns (globs or compiled regexes) to their own capacity.

    Unlike Channels, ``channel_capacity`` is compiled here once, so it works
    on the first ``send`` of every backend; :attr:`channel_capacity` holds the
    compiled ``(pattern, capacity)`` pairs.

    Backends reuse :meth:`require_valid_channel_name`,
    :meth:`require_valid_group_name`, :meth:`require_valid_message` and
    :meth:`get_capacity` so every backend rejects the same input with the same
    message. The I/O methods raise :class:`NotImplementedError` until a
    backend provides them; :meth:`close` does nothing by default.
    """

    MAX_NAME_LENGTH = 100

    #: Extensions the backend implements, e.g. ``["groups", "flush"]``. A class
    #: attribute so a subclass's list is what its instances report.
    extensions: list[str] = []

    channel_name_regex = _CHANNEL_NAME
    group_name_regex = _GROUP_NAME
    #: The start of every name error, formatted with ``"Channel"`` or
    #: ``"Group"`` (Channels' attribute and wording; tests match on it). Our
    #: detail about the name that arrived follows it.
    invalid_name_error = (
        "{} name must be a valid unicode string "
        f"with length < {MAX_NAME_LENGTH} "
        "containing only ASCII alphanumerics, hyphens, underscores, or periods."
    )

    def __init__(
        self,
        expiry: float = 60,
        capacity: int = 100,
        channel_capacity: ChannelCapacity | None = None,
    ) -> None:
        self.expiry = expiry
        self.capacity = capacity
        self.channel_capacity: CapacityPatterns = self.compile_capacities(
            channel_capacity or {}
        )
        self._known_channels = KnownNames(self.require_valid_channel_name)
        self._known_groups = KnownNames(self.require_valid_group_name)

    def _require_known_channel(self, name: str) -> None:
        """Validate ``name`` unless it already passed: a consumer sends and
        receives on the same few names all its life."""
        if name.__class__ is not str or name not in self._known_channels:
            self._known_channels.learn(name)

    # Capacities

    def compile_capacities(self, channel_capacity: ChannelCapacity) -> CapacityPatterns:
        """Return ``channel_capacity`` as ``[(compiled pattern, capacity)]``.

        String keys are globs (``fnmatch`` syntax, matched against the whole
        name); compiled patterns are kept and matched with ``pattern.match``.
        Order is kept, so the first matching pattern wins. Calling it on its
        own output returns an equal list. Raises :class:`TypeError` for a key
        that is neither a string nor a compiled pattern, or a capacity that is
        not a positive integer.
        """
        pairs: Iterable[tuple[Any, Any]]
        if isinstance(channel_capacity, Mapping):
            pairs = channel_capacity.items()
        else:
            pairs = channel_capacity
        compiled: CapacityPatterns = []
        for pattern, capacity in pairs:
            if isinstance(pattern, re.Pattern):
                regex: re.Pattern[str] = pattern
            elif isinstance(pattern, str):
                regex = re.compile(fnmatch.translate(pattern))
            else:
                raise TypeError(
                    f"channel_capacity key {shown(pattern)} is a "
                    f"{type(pattern).__name__}: use a glob string such as "
                    "'websocket.send*' or a compiled re.Pattern"
                )
            if (
                isinstance(capacity, bool)
                or not isinstance(capacity, int)
                or capacity < 1
            ):
                raise TypeError(
                    f"channel_capacity for {shown(pattern)} is "
                    f"{shown(capacity)}: use a positive int"
                )
            compiled.append((regex, capacity))
        return compiled

    def get_capacity(self, channel: str) -> int:
        """Return the capacity of ``channel``: the first matching
        ``channel_capacity`` pattern's value, else ``capacity``."""
        for pattern, capacity in self.channel_capacity:
            if pattern.match(channel):
                return capacity
        return self.capacity

    # Names

    def match_type_and_length(self, name: object) -> bool:
        """Return whether ``name`` is a ``str`` shorter than
        :attr:`MAX_NAME_LENGTH` characters."""
        return isinstance(name, str) and len(name) < self.MAX_NAME_LENGTH

    def _name_problem(self, kind: str, name: object) -> str | None:
        """Return why ``name`` cannot be a ``kind`` name, or ``None``."""
        if not isinstance(name, str):
            return f"{kind} name must be a str, got {type(name).__name__} {shown(name)}"
        if len(name) >= self.MAX_NAME_LENGTH:
            return (
                f"Invalid {kind.lower()} name {shown(name)}: it has {len(name)} "
                f"characters, it must have fewer than {self.MAX_NAME_LENGTH}"
            )
        return None

    def require_valid_channel_name(self, name: object, receive: bool = False) -> bool:
        """Return ``True`` if ``name`` is a valid channel name.

        Valid: fewer than 100 characters of ASCII letters, digits, ``-``,
        ``_`` or ``.``, optionally followed by ``!`` and a process-local part
        of the same characters. With ``receive=True`` a name containing ``!``
        must end at the ``!`` (Channels' rule for receiving on a
        process-specific channel). Raises :class:`TypeError` saying what
        arrived and what is allowed.
        """
        problem = self._name_problem("Channel", name)
        if problem is not None:
            raise self._name_error("Channel", problem)
        assert isinstance(name, str)
        if self.channel_name_regex.fullmatch(name) is None:
            raise self._name_error(
                "Channel",
                f"Invalid channel name {shown(name)}: use {_NAME_CHARS}, "
                "optionally followed by one '!' and a process-local part of "
                f"the same characters, fewer than {self.MAX_NAME_LENGTH} "
                "characters in all",
            )
        if receive and "!" in name and not name.endswith("!"):
            raise TypeError(
                "Specific channel names in receive() must end at the !: "
                f"got {shown(name)}, receive on "
                f"{shown(self.non_local_name(name))}"
            )
        return True

    def _name_error(self, kind: str, detail: str) -> TypeError:
        return TypeError(f"{self.invalid_name_error.format(kind)} {detail}")

    def require_valid_group_name(self, name: object) -> bool:
        """Return ``True`` if ``name`` is a valid group name: fewer than 100
        characters of ASCII letters, digits, ``-``, ``_`` or ``.``. Raises
        :class:`TypeError` saying what arrived and what is allowed."""
        problem = self._name_problem("Group", name)
        if problem is not None:
            raise self._name_error("Group", problem)
        assert isinstance(name, str)
        if self.group_name_regex.fullmatch(name) is None:
            raise self._name_error(
                "Group",
                f"Invalid group name {shown(name)}: use {_NAME_CHARS}, "
                f"fewer than {self.MAX_NAME_LENGTH} characters",
            )
        return True

    def valid_channel_names(self, names: object, receive: bool = False) -> bool:
        """Return ``True`` if ``names`` is a non-empty list of valid channel
        names. Raises :class:`TypeError` otherwise, which is also an
        ``AssertionError`` (Channels asserts)."""
        if not isinstance(names, list) or not names:
            raise InvalidChannelNames(
                "names must be a non-empty list of channel names, got "
                f"{type(names).__name__} {shown(names)}"
            )
        for name in names:
            self.require_valid_channel_name(name, receive=receive)
        return True

    def valid_channel_name(self, channel_name: object, receive: bool = False) -> bool:
        """Deprecated alias of :meth:`require_valid_channel_name`."""
        warnings.warn(
            "valid_channel_name is deprecated, use require_valid_channel_name",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_channel_name(channel_name, receive=receive)

    def valid_group_name(self, group_name: object) -> bool:
        """Deprecated alias of :meth:`require_valid_group_name`."""
        warnings.warn(
            "valid_group_name is deprecated, use require_valid_group_name",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.require_valid_group_name(group_name)

    def non_local_name(self, name: str) -> str:
        """Return the part of ``name`` every process shares: up to and
        including the ``!`` of a process-specific name, else the whole name."""
        bang = name.find("!")
        return name if bang < 0 else name[: bang + 1]

    # Messages

    def require_valid_message(self, message: object) -> bool:
        """Return ``True`` if ``message`` can be sent: it must be a ``dict``.
        Raises :class:`TypeError` naming the type that arrived, which is also
        an ``AssertionError`` (Channels asserts)."""
        if not isinstance(message, dict):
            raise MessageNotDict(
                f"Channel layer messages must be dicts, got "
                f"{type(message).__name__} {shown(message)}"
            )
        return True

    # The channel layer API, which backends implement.

    async def send(self, channel: str, message: Message) -> None:
        """Send ``message`` to ``channel``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement send()")

    async def receive(self, channel: str) -> Message:
        """Wait for and return the next message on ``channel``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement receive()")

    async def new_channel(self, prefix: str = "specific.") -> str:
        """Return a new, unique, process-specific channel name."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement new_channel()"
        )

    async def flush(self) -> None:
        """Drop every message and group (the ``flush`` extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement flush() (flush extension)"
        )

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (the ``groups`` extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_add() (groups extension)"
        )

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (the ``groups`` extension)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_discard() "
            "(groups extension)"
        )

    async def group_send(self, group: str, message: Message) -> None:
        """Send ``message`` to every channel in ``group`` (``groups``)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement group_send() (groups extension)"
        )

    async def close(self) -> None:
        """Release the layer's resources; the base layer holds none."""
