"""Refuse WebSocket handshakes whose ``Origin`` is not allowed.

Browsers let any page open a WebSocket to any site and send that site's
cookies along; the ``Origin`` header is how a server tells its own pages from
someone else's. ``OriginValidator`` works without Django;
``AllowedHostsOriginValidator`` reads Django's ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .._types import ASGIApp, Receive, Scope, Send
from ..generic.websocket import AsyncWebsocketConsumer

__all__ = ["AllowedHostsOriginValidator", "OriginValidator", "WebsocketDenier"]

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


class WebsocketDenier(AsyncWebsocketConsumer):
    """A WebSocket application that refuses every handshake (the server
    answers 403)."""

    async def connect(self) -> None:
        await self.close()


_deny = WebsocketDenier.as_asgi()


def _parse_origin(value: bytes) -> SplitResult | None:
    # An origin is "scheme://host[:port]" (RFC 6454) in ASCII; browsers send
    # nothing else, so anything else (including "null" from sandboxed frames
    # and file: pages) is treated as no origin at all.
    try:
        parsed = urlsplit(value.decode("ascii"))
        parsed.port  # noqa: B018 (raises ValueError for a bad port)
    except (UnicodeDecodeError, ValueError):
        return None
    if (
        not parsed.scheme
        or not parsed.hostname
        or parsed.username is not None
        or parsed.password is not None
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
    ):
        return None
    return parsed


def _same_domain(host: str, pattern: str) -> bool:
    # ".example.com" matches example.com and every subdomain of it.
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


class OriginValidator:
    """Pass WebSocket connections whose ``Origin`` matches one of
    ``allowed_origins`` to ``application``; refuse the rest with
    ``WebsocketDenier`` (a 403 handshake response).

    Patterns (case-insensitive):

    - ``"*"`` allows everything, including a missing ``Origin``;
    - ``"example.com"`` allows that host with any scheme and port;
      ``".example.com"`` also allows its subdomains; ``"example.com:8443"``
      allows only that port (Channels ignores a port written here);
    - ``"https://example.com"`` or ``"https://.example.com:8443"`` also
      require the scheme and the port (80 for http/ws, 443 for https/wss when
      left out).

    A missing, repeated or malformed ``Origin`` (including ``null``) is
    refused unless ``"*"`` is allowed. Raises ``ValueError`` when called
    with a scope that is not a WebSocket.
    """

    def __init__(self, application: ASGIApp, allowed_origins: Iterable[str]):
        self.application = application
        self.allowed_origins = list(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(
                "You cannot use OriginValidator on a non-WebSocket connection "
                f"(got scope type {scope['type']!r})"
            )
        origins = [v for k, v in scope.get("headers", ()) if k == b"origin"]
        # A browser sends exactly one Origin; two mean a forged request.
        parsed = _parse_origin(origins[0]) if len(origins) == 1 else None
        if self.valid_origin(parsed):
            return await self.application(scope, receive, send)
        return await _deny(scope, receive, send)

    def valid_origin(self, parsed_origin: SplitResult | None) -> bool:
        """True when the parsed origin (``None`` when missing or malformed)
        may connect."""
        if parsed_origin is None and "*" not in self.allowed_origins:
            return False
        return self.validate_origin(parsed_origin)

    def validate_origin(self, parsed_origin: SplitResult | None) -> bool:
        """True when any allowed pattern matches the parsed origin."""
        return any(
            pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
            for pattern in self.allowed_origins
        )

    def match_allowed_origin(
        self, parsed_origin: SplitResult | None, pattern: str
    ) -> bool:
        """True when ``pattern`` (one entry of ``allowed_origins``) matches."""
        if parsed_origin is None or parsed_origin.hostname is None:
            return False
        pattern = pattern.lower()
        has_scheme = "://" in pattern
        try:
            parsed_pattern = urlsplit(pattern if has_scheme else "//" + pattern)
            pattern_port = parsed_pattern.port
        except ValueError:
            return False
        pattern_host = parsed_pattern.hostname
        if not pattern_host:
            return False
        if has_scheme:
            if parsed_pattern.scheme != parsed_origin.scheme:
                return False
            pattern_port = self.get_origin_port(parsed_pattern)
        if pattern_port is not None and pattern_port != self.get_origin_port(
            parsed_origin
        ):
            return False
        return _same_domain(parsed_origin.hostname, pattern_host)

    def get_origin_port(self, origin: Any) -> int | None:
        """The origin's port, or its scheme's default (80 for http/ws, 443
        for https/wss), or ``None`` for another scheme without a port."""
        if origin.port is not None:
            return int(origin.port)
        return _DEFAULT_PORTS.get(origin.scheme)


def AllowedHostsOriginValidator(application: ASGIApp) -> OriginValidator:
    """Return an ``OriginValidator`` allowing Django's ``ALLOWED_HOSTS``
    (read now), or, when that is empty and ``DEBUG`` is on, the local hosts
    Django's own host check allows then: ``.localhost``, ``127.0.0.1`` and
    ``[::1]``. Needs configured Django settings."""
    from django.conf import settings

    allowed_hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    return OriginValidator(application, allowed_hosts)
