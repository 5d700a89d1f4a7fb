"""Redis host specs: decoding ``hosts``, building pools, picking a shard.

``hosts`` accepts what channels_redis 4.x accepts -- URL strings, dicts of
connection keyword arguments (with an optional ``address`` URL), ``(host,
port)`` pairs and Sentinel specs -- and shards keys over the hosts with the
same CRC32 ring, so both libraries put every key on the same server.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.connection import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = [
    "DEFAULT_HOST",
    "HostSpec",
    "consistent_hash",
    "create_pool",
    "decode_hosts",
    "describe_host",
]

#: One decoded entry of ``hosts``: keyword arguments for a connection pool.
HostSpec = dict[str, Any]

DEFAULT_HOST: HostSpec = {"address": "redis://localhost:6379"}

# Without these a black-holed host blocks a caller for minutes (redis-py 5
# has no timeouts by default). Blocking reads pass their own timeout.
_CONNECT_TIMEOUT = 5.0
_SOCKET_TIMEOUT = 5.0


def decode_hosts(hosts: object) -> list[HostSpec]:
    """Return one pool-argument dict per entry of ``hosts``.

    ``None`` or an empty list means ``redis://localhost:6379``. Entries are
    URL strings, dicts (copied) or ``(host, port)`` pairs. Raises
    :class:`ValueError` for a bare string (a list is required, as in
    channels_redis) or a Sentinel dict without ``sentinels``, and
    :class:`TypeError` for an entry of another type.
    """
    if not hosts:
        return [dict(DEFAULT_HOST)]
    if isinstance(hosts, (str, bytes)):
        raise ValueError(
            f"hosts={hosts!r} is a single string: pass a list of Redis hosts, "
            f"even if there is only one, e.g. hosts=[{hosts!r}]"
        )
    if not isinstance(hosts, Iterable):
        raise TypeError(
            f"hosts must be a list of URLs, dicts or (host, port) pairs, got "
            f"{type(hosts).__name__}"
        )
    decoded: list[HostSpec] = []
    for entry in hosts:
        if isinstance(entry, Mapping):
            if "master_name" in entry and not entry.get("sentinels"):
                raise ValueError(
                    f"Sentinel host for master {entry['master_name']!r} has no "
                    "'sentinels': add 'sentinels': [(host, port), ...]"
                )
            decoded.append(dict(entry))
        elif isinstance(entry, (tuple, list)) and len(entry) == 2:
            decoded.append({"host": entry[0], "port": entry[1]})
        elif isinstance(entry, str):
            decoded.append({"address": entry})
        else:
            raise TypeError(
                f"Invalid Redis host {entry!r}: use a URL string such as "
                "'redis://localhost:6379/0', a dict of connection arguments, "
                "a (host, port) pair or a Sentinel dict with 'sentinels' and "
                "'master_name'"
            )
    return decoded


def _with_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return ``kwargs`` plus the connection defaults the layer relies on."""
    kwargs.setdefault("socket_connect_timeout", _CONNECT_TIMEOUT)
    kwargs.setdefault("socket_timeout", _SOCKET_TIMEOUT)
    # The replies are parsed as RESP2 whatever redis-py's default protocol is
    # (redis-py 8 negotiates RESP3); a user-set protocol is honoured.
    kwargs.setdefault("protocol", 2)
    return kwargs


def create_pool(host: HostSpec) -> ConnectionPool:
    """Return a new connection pool for one decoded host entry.

    The pool is tied to the event loop that first uses it.
    """
    kwargs = _with_defaults(dict(host))
    address = kwargs.pop("address", None)
    if address is not None:
        return ConnectionPool.from_url(address, **kwargs)
    master_name = kwargs.pop("master_name", None)
    if master_name is not None:
        sentinels = kwargs.pop("sentinels")
        sentinel_kwargs = kwargs.pop("sentinel_kwargs", None)
        manager = Sentinel(  # type: ignore[no-untyped-call]
            [tuple(sentinel) for sentinel in sentinels],
            sentinel_kwargs=sentinel_kwargs,
        )
        pool: ConnectionPool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            master_name, manager, **kwargs
        )
        return pool
    return ConnectionPool(**kwargs)


def describe_host(host: HostSpec) -> str:
    """Return a short, password-free description of a host for messages."""
    address = host.get("address")
    if isinstance(address, str):
        parts = urlsplit(address)
        if parts.password is not None:
            netloc = parts.netloc.rsplit("@", 1)[-1]
            user = f"{parts.username}:***@" if parts.username else ":***@"
            parts = parts._replace(netloc=user + netloc)
        return urlunsplit(parts)
    if "master_name" in host:
        sentinels = ",".join(
            f"{sentinel[0]}:{sentinel[1]}" for sentinel in host.get("sentinels", [])
        )
        return f"sentinel master {host['master_name']!r} via {sentinels}"
    if "path" in host:
        return f"unix://{host['path']}"
    return f"redis://{host.get('host', 'localhost')}:{host.get('port', 6379)}"


def consistent_hash(value: str | bytes, ring_size: int) -> int:
    """Return the shard index of ``value`` on a ring of ``ring_size`` hosts.

    CRC32 masked to 12 bits and scaled to the ring, as channels_redis does,
    so both libraries agree on which server holds a key.
    """
    if ring_size == 1:
        return 0
    data = value.encode("utf8") if isinstance(value, str) else value
    return int((binascii.crc32(data) & 0xFFF) / (4096 / ring_size))
