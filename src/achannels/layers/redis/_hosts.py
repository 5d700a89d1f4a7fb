"""Redis host specs: decoding ``hosts``, building pools, picking a shard.

``hosts`` accepts what channels_redis 4.x accepts -- URL strings, dicts of
connection keyword arguments (with an optional ``address`` URL), ``(host,
port)`` pairs and Sentinel specs -- and shards keys over the hosts with the
same CRC32 ring, so both libraries put every key on the same server.

A Redis Cluster is one entry of its own, ``{"cluster": [seed URLs...]}``
(other keys are connection arguments for every node); it cannot be mixed
with other hosts.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = [
    "DEFAULT_HOST",
    "HostSpec",
    "cluster_node",
    "cluster_seeds",
    "cluster_spec",
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
        if isinstance(entry, str) and entry.startswith("redis+cluster"):
            raise ValueError(
                f"Invalid Redis host {entry!r}: configure a Redis Cluster as "
                f"hosts=[{{'cluster': ['redis://node-1:6379', ...]}}] (seed "
                "node URLs, redis:// or rediss://)"
            )
        if isinstance(entry, Mapping) and "cluster" in entry:
            decoded.append(_decode_cluster(entry))
        elif isinstance(entry, Mapping):
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
    if len(decoded) > 1 and any("cluster" in entry for entry in decoded):
        raise ValueError(
            f"hosts mixes a Redis Cluster entry with {len(decoded) - 1} other "
            "host(s): a layer runs on one cluster (hosts=[{'cluster': [...]}], "
            "every node of it as a seed URL) or on a list of separate servers, "
            "not both"
        )
    return decoded


def _decode_cluster(entry: Mapping[str, Any]) -> HostSpec:
    """Check and copy a ``{"cluster": [seeds...], **connection_args}`` entry."""
    seeds = entry["cluster"]
    for key in ("address", "sentinels", "master_name", "host", "port", "db"):
        if key in entry:
            raise ValueError(
                f"A Redis Cluster host entry cannot have {key!r}: list the seed "
                "nodes under 'cluster' (URLs or (host, port) pairs); the other "
                "keys are connection arguments for every node"
            )
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise ValueError(
            f"'cluster' must be a list of seed node URLs, got {seeds!r}: e.g. "
            "{'cluster': ['redis://10.0.0.1:6379', 'redis://10.0.0.2:6379']}"
        )
    decoded_seeds: list[tuple[str, int] | str] = []
    for seed in seeds:
        if isinstance(seed, (tuple, list)) and len(seed) == 2:
            decoded_seeds.append((str(seed[0]), int(seed[1])))
        elif isinstance(seed, str) and seed.startswith(("redis://", "rediss://")):
            if parse_url(seed).get("db", 0) != 0:
                raise ValueError(
                    f"Redis Cluster seed {seed!r} names a database: a cluster "
                    "has only database 0"
                )
            decoded_seeds.append(seed)
        else:
            raise ValueError(
                f"Invalid Redis Cluster seed {seed!r}: use a redis:// or "
                "rediss:// URL or a (host, port) pair"
            )
    if not decoded_seeds:
        raise ValueError("'cluster' lists no seed nodes: give at least one URL")
    return {**entry, "cluster": decoded_seeds}


def cluster_spec(hosts: list[HostSpec]) -> HostSpec | None:
    """Return the cluster entry of decoded ``hosts``, or ``None`` when the
    hosts are separate servers."""
    if len(hosts) == 1 and "cluster" in hosts[0]:
        return hosts[0]
    return None


def cluster_seeds(spec: HostSpec) -> list[HostSpec]:
    """Return one pool-argument dict per seed node of a cluster entry."""
    seeds = []
    for seed in spec["cluster"]:
        if isinstance(seed, str):
            parsed = parse_url(seed)
            seeds.append(
                cluster_node(
                    spec, parsed.get("host", "localhost"), parsed.get("port", 6379)
                )
            )
        else:
            seeds.append(cluster_node(spec, seed[0], seed[1]))
    return seeds


def cluster_node(spec: HostSpec, host: str, port: int) -> HostSpec:
    """Return the pool arguments of node ``host:port`` of a cluster entry:
    the entry's connection arguments, with the credentials and TLS of its
    first seed URL (nodes the cluster reports get the same)."""
    kwargs = {key: value for key, value in spec.items() if key != "cluster"}
    first = spec["cluster"][0]
    if isinstance(first, str):
        parsed = dict(parse_url(first))
        parsed.pop("db", None)
        kwargs = {**parsed, **kwargs}
    kwargs["host"] = host
    kwargs["port"] = port
    return kwargs


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
    if "cluster" in host:
        seeds = ", ".join(
            describe_host(
                {"address": seed}
                if isinstance(seed, str)
                else {"host": seed[0], "port": seed[1]}
            )
            for seed in host["cluster"]
        )
        return f"Redis Cluster via {seeds}"
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
