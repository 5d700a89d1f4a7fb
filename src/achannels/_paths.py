"""Django-free URL patterns for ``achannels.routing.path`` and ``re_path``.

They follow Django's ``django.urls.path``/``re_path`` semantics (route syntax,
converters, ``kwargs=`` extra arguments, endpoint vs. prefix matching) so a
routing module moves between the two by changing one import, but they work
without Django installed or configured.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

__all__ = [
    "Converter",
    "Match",
    "RegexPattern",
    "RoutePattern",
    "URLPattern",
    "literal_prefix",
    "prefix_pattern",
    "register_converter",
]

#: What a pattern's ``match`` returns: the unmatched rest of the path, the
#: positional and the keyword arguments captured (Django's triple).
Match: TypeAlias = "tuple[str, tuple[Any, ...], dict[str, Any]]"


class Converter(Protocol):
    """A path converter as Django defines it: a regex and two conversions.

    ``to_python`` raising ``ValueError`` means "this route does not match".
    """

    regex: str

    def to_python(self, value: str) -> Any: ...

    def to_url(self, value: Any) -> str: ...


class StringConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class IntConverter:
    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class SlugConverter(StringConverter):
    regex = "[-a-zA-Z0-9_]+"


class UUIDConverter:
    regex = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID) -> str:
        return str(value)


class PathConverter(StringConverter):
    regex = ".+"


_CONVERTERS: dict[str, Converter] = {
    "int": IntConverter(),
    "path": PathConverter(),
    "slug": SlugConverter(),
    "str": StringConverter(),
    "uuid": UUIDConverter(),
}


def register_converter(converter: type[Converter] | Converter, type_name: str) -> None:
    """Make ``<type_name:name>`` usable in routes built afterwards.

    ``converter`` is a class (instantiated here, as Django does) or an
    instance with ``regex``, ``to_python`` and ``to_url``. Registering an
    existing name replaces it for routes built later. Raises ``TypeError`` when
    the converter lacks one of those members. Only affects
    ``achannels.routing.path``; Django's ``path`` has its own registry.
    """
    instance = converter() if isinstance(converter, type) else converter
    missing = [
        name for name in ("regex", "to_python", "to_url") if not hasattr(instance, name)
    ]
    if missing:
        raise TypeError(
            f"Converter {converter!r} for {type_name!r} lacks {', '.join(missing)}: "
            "a converter needs a 'regex' string, 'to_python' and 'to_url'"
        )
    _CONVERTERS[type_name] = instance


# Same grammar as Django's: ``<name>`` or ``<converter:name>``.
_PARAMETER_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


def _route_to_regex(route: str, is_endpoint: bool) -> tuple[str, dict[str, Converter]]:
    parts = ["^"]
    converters: dict[str, Converter] = {}
    end = 0
    for found in _PARAMETER_RE.finditer(route):
        if any(char.isspace() for char in found[0]):
            raise ValueError(
                f"URL route {route!r} cannot contain whitespace in angle brackets <…>"
            )
        type_name = found["converter"] or "str"
        parameter = found["parameter"]
        if not parameter.isidentifier():
            raise ValueError(
                f"URL route {route!r} uses parameter name {parameter!r} which isn't "
                "a valid Python identifier"
            )
        if parameter in converters:
            raise ValueError(
                f"URL route {route!r} uses parameter name {parameter!r} twice"
            )
        try:
            converter = _CONVERTERS[type_name]
        except KeyError:
            raise ValueError(
                f"URL route {route!r} uses invalid converter {type_name!r}; known "
                f"converters: {', '.join(sorted(_CONVERTERS))} (add one with "
                "achannels.routing.register_converter)"
            ) from None
        converters[parameter] = converter
        parts.append(re.escape(route[end : found.start()]))
        parts.append(f"(?P<{parameter}>{converter.regex})")
        end = found.end()
    parts.append(re.escape(route[end:]))
    if is_endpoint:
        parts.append(r"\Z")
    return "".join(parts), converters


class RoutePattern:
    """A ``path()`` route such as ``"chat/<int:room>/"``, compiled once.

    An endpoint pattern must match the whole remaining path; a prefix pattern
    (``is_endpoint=False``, used in front of a nested router) matches its
    start and leaves the rest.
    """

    def __init__(self, route: str, name: str | None = None, is_endpoint: bool = True):
        if not isinstance(route, str):
            raise TypeError(f"path() route must be a str, got {type(route).__name__}")
        self._route = route
        self.name = name
        self._is_endpoint = is_endpoint
        regex, self.converters = _route_to_regex(route, is_endpoint)
        self.regex = re.compile(regex)

    def as_prefix(self) -> RoutePattern:
        """Return the same route matching a path prefix instead of a whole path."""
        return RoutePattern(self._route, self.name, is_endpoint=False)

    def match(self, path: str) -> Match | None:
        """Return ``(rest, (), kwargs)`` when ``path`` matches, else ``None``."""
        if not self.converters:
            # Literal routes (most prefixes, many endpoints) skip the regex.
            if self._is_endpoint:
                return ("", (), {}) if path == self._route else None
            if path.startswith(self._route):
                return path[len(self._route) :], (), {}
            return None
        found = self.regex.match(path)
        if found is None:
            return None
        kwargs: dict[str, Any] = found.groupdict()
        for key, value in kwargs.items():
            try:
                kwargs[key] = self.converters[key].to_python(value)
            except ValueError:
                return None
        return path[found.end() :], (), kwargs

    def __str__(self) -> str:
        return self._route

    def __repr__(self) -> str:
        return f"<RoutePattern {self._route!r}>"


class RegexPattern:
    """A ``re_path()`` pattern such as ``r"^chat/(?P<room>\\w+)/$"``.

    Like Django: named groups become keyword arguments (unmatched optional
    groups are dropped); without named groups, all groups become positional
    arguments. Patterns are searched, so anchor them with ``^``; an endpoint
    pattern ending in ``$`` must match the whole remaining path.
    """

    def __init__(self, regex: str, name: str | None = None, is_endpoint: bool = True):
        if not isinstance(regex, str):
            raise TypeError(
                f"re_path() regex must be a str, got {type(regex).__name__}"
            )
        self._regex = regex
        self.name = name
        self._is_endpoint = is_endpoint
        try:
            self.regex = re.compile(regex)
        except re.error as exc:
            raise ValueError(
                f"URL regex {regex!r} is not a valid regular expression: {exc}"
            ) from exc
        self._search: Callable[[str], re.Match[str] | None] = (
            self.regex.fullmatch
            if is_endpoint and regex.endswith("$")
            else self.regex.search
        )

    def as_prefix(self) -> RegexPattern:
        """Return the same regex, no longer required to match the whole path."""
        return RegexPattern(self._regex, self.name, is_endpoint=False)

    def match(self, path: str) -> Match | None:
        """Return ``(rest, args, kwargs)`` when ``path`` matches, else ``None``."""
        found = self._search(path)
        if found is None:
            return None
        kwargs = {k: v for k, v in found.groupdict().items() if v is not None}
        args = () if found.re.groupindex else found.groups()
        return path[found.end() :], args, kwargs

    def __str__(self) -> str:
        return self._regex

    def __repr__(self) -> str:
        return f"<RegexPattern {self._regex!r}>"


class URLPattern:
    """One route: a pattern, the ASGI application it leads to, extra kwargs.

    Attribute names follow Django's ``URLPattern`` (``pattern``, ``callback``,
    ``default_args``, ``name``) so routers treat both alike.
    """

    def __init__(
        self,
        pattern: RoutePattern | RegexPattern,
        callback: Callable[..., Any],
        default_args: dict[str, Any] | None = None,
        name: str | None = None,
    ):
        self.pattern = pattern
        self.callback = callback
        self.default_args = default_args or {}
        self.name = name

    def __repr__(self) -> str:
        return f"<URLPattern {self.pattern!s} {self.callback!r}>"


def prefix_pattern(pattern: Any) -> Any:
    """Return a copy of ``pattern`` that matches a prefix; never mutates it."""
    if isinstance(pattern, (RoutePattern, RegexPattern)):
        return pattern.as_prefix()
    # Another pattern can only be Django's if Django is already imported.
    resolvers: Any = sys.modules.get("django.urls.resolvers")
    if resolvers is not None:
        # Django keeps the source in private attributes (Channels reads
        # them too); a Django pattern is rebuilt, not mutated.
        if isinstance(pattern, resolvers.RoutePattern):
            return resolvers.RoutePattern(
                pattern._route, pattern.name, is_endpoint=False
            )
        if isinstance(pattern, resolvers.RegexPattern):
            return resolvers.RegexPattern(
                pattern._regex, pattern.name, is_endpoint=False
            )
    raise TypeError(
        f"Unsupported pattern type {type(pattern).__name__} in front of a nested "
        "router: use path() or re_path()"
    )


# Characters that stand for themselves in a regex (outside a class), and
# quantifiers that make the character before them optional.
_REGEX_LITERAL = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-=:@!,;'\"% ~&<>"
)
_QUANTIFIERS = frozenset("?*+{")


def literal_prefix(pattern: Any) -> str:
    """Return text every path matching ``pattern`` starts with ("" if unsure).

    Used to skip routes with one ``str.startswith`` instead of a regex and a
    Python call each; it must never reject a path the pattern would match.
    """
    source: Any = getattr(pattern, "_route", None)
    if source is not None:
        # path() syntax: everything before the first parameter is literal. A
        # lazily translated route (not a str) varies with the language.
        return source.partition("<")[0] if isinstance(source, str) else ""
    source = getattr(pattern, "_regex", None)
    if not isinstance(source, str) or not source.startswith("^"):
        return ""  # unknown pattern, or searched anywhere in the path
    if "|" in source or "(?" in source:
        return ""  # alternation or inline flags change what the prefix means
    prefix: list[str] = []
    index = 1
    while index < len(source):
        char = source[index]
        if char == "\\" and index + 1 < len(source) and not source[index + 1].isalnum():
            char = source[index + 1]
            index += 1
        elif char not in _REGEX_LITERAL:
            if char in _QUANTIFIERS and prefix:
                prefix.pop()
            break
        prefix.append(char)
        index += 1
    return "".join(prefix)
