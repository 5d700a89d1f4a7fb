"""Channel layer operations without a server, achannels against Channels.

``python -m benchmarks.layers`` is a worker speaking the job protocol of
``benchmarks._jobs``, so the runner interleaves layer slices between the
systems exactly as it does server slices. A job names the ``system``
(``achannels`` or ``channels``), the ``backend`` and the ``op``; each ``go``
measures one slice of about ``duration`` seconds and reports ``count``
operations (and ``deliveries``) over ``wall`` seconds, with the worker's CPU
time as the ``server_cpu`` (the layer is the system under test here).

The scenarios come from the layer owners' scripts where they exist:
``bench_memory_layer.py`` (send/receive, ping-pong, end-to-end group_send
with ``others`` channels alive) and ``bench_redis_layer.py`` (round trips,
end-to-end group_send to receivers in other processes). One more is ours:

- ``group_send`` (memory): ``members`` channels in one group and ``others``
  unrelated channels alive; ``group_send`` calls/s, the sender's cost alone
  (both layers get a capacity that nothing fills).

Backends: ``memory`` (``InMemoryChannelLayer``), ``redis`` (the sorted-set
``RedisChannelLayer`` against ``channels_redis.core``) and ``redis-pubsub``
(``RedisPubSubChannelLayer`` against ``channels_redis.pubsub``).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._jobs import Scenario, serve_forever

__all__ = ["DEFAULT_REDIS_URL", "make_memory_layer", "redis_url", "setup"]

Job = dict[str, Any]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Large enough that no member queue fills during a sender-only window.
BENCH_CAPACITY = 1_000_000
# Long enough that the "others" stay alive for the whole run: with the
# default 60 s they expire mid-run, and a layer that scans every channel
# (Channels') would look faster in later slices than in earlier ones.
BENCH_EXPIRY = 3600


def redis_url() -> str:
    """Where the Redis benchmarks connect (``ACHANNELS_BENCH_REDIS_URL``,
    else the test suite's ``ACHANNELS_TEST_REDIS_URL``, else localhost)."""
    return os.environ.get(
        "ACHANNELS_BENCH_REDIS_URL",
        os.environ.get("ACHANNELS_TEST_REDIS_URL", DEFAULT_REDIS_URL),
    )


def make_memory_layer(system: str, capacity: int = BENCH_CAPACITY) -> Any:
    """A fresh in-memory layer of ``system``; ``ImportError`` when Channels
    is not installed."""
    if system == "achannels":
        from achannels.layers.memory import InMemoryChannelLayer

        return InMemoryChannelLayer(capacity=capacity, expiry=BENCH_EXPIRY)
    from channels.layers import InMemoryChannelLayer as ChannelsMemory

    return ChannelsMemory(capacity=capacity, expiry=BENCH_EXPIRY)


async def populate(layer: Any, others: int) -> None:
    """Keep ``others`` unrelated channels alive, each holding one message."""
    message = {"type": "bench.idle"}
    base = uuid.uuid4().hex[:8]
    for n in range(others):
        await layer.send(f"other.{base}.{n}", message)


def _measure(run: Callable[[], Awaitable[float]]) -> Callable[[], Awaitable[Any]]:
    """Wrap an owner's ``ops/s`` function so it reports wall and CPU time."""

    async def measured() -> dict[str, Any]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        rate = await run()
        wall = time.perf_counter() - t0
        return {
            "wall": wall,
            "count": rate * wall,
            "server_cpu": time.process_time() - cpu0,
            "client_cpu": None,
        }

    return measured


class _Layer:
    """A layer scenario: one slice per ``go``."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.system = str(job["system"])
        self.duration = float(job["duration"])
        self.members = int(job.get("members", 0))
        self.layer: Any = None
        self.run: Callable[[], Awaitable[dict[str, Any]]] | None = None

    def ready_info(self) -> dict[str, Any]:
        return {}

    async def slice(self) -> dict[str, Any]:
        assert self.run is not None
        result = await asyncio.wait_for(self.run(), float(self.job.get("timeout", 600)))
        if self.members:
            result["deliveries"] = result["count"] * self.members
        return dict(result)

    async def aclose(self) -> None:
        if self.layer is not None and hasattr(self.layer, "flush"):
            await self.layer.flush()


class Memory(_Layer):
    async def open(self) -> None:
        from benchmarks import bench_memory_layer as owner

        op = self.job["op"]
        self.layer = layer = make_memory_layer(self.system)
        await populate(layer, int(self.job.get("others", 0)))
        seconds = self.duration
        if op == "sendrecv":
            self.run = _measure(lambda: owner.bench_send_receive(layer, seconds))
        elif op == "pingpong":
            self.run = _measure(lambda: owner.bench_ping_pong(layer, seconds))
        elif op == "group_e2e":
            # The owner's function counts deliveries per second; a group op
            # is one group_send and all of its deliveries.
            members = self.members

            async def group_ops() -> float:
                return await owner.bench_group_send(layer, members, seconds) / members

            self.run = _measure(group_ops)
        elif op == "group_send":
            self.run = await self._sender_only(layer)
        else:
            raise ValueError(f"unknown memory op {op!r}")

    async def _sender_only(self, layer: Any) -> Callable[[], Awaitable[Any]]:
        group = f"bench{uuid.uuid4().hex[:8]}"
        for _ in range(self.members):
            await layer.group_add(group, await layer.new_channel())
        message = {"type": "bench.message", "text": "hello everyone"}
        seconds = self.duration

        async def rate() -> float:
            count = 0
            start = time.perf_counter()
            while True:
                await layer.group_send(group, message)
                count += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    return count / elapsed

        return _measure(rate)


class Redis(_Layer):
    LIBS = {"achannels": "achannels", "channels": "channels_redis"}

    async def open(self) -> None:
        from benchmarks import bench_redis_layer as owner

        op = self.job["op"]
        kind = "pubsub" if self.job["backend"] == "redis-pubsub" else "core"
        lib = self.LIBS[self.system]
        url = redis_url()
        seconds = self.duration
        # Fail here, not mid-slice, when the layer is not importable.
        owner.make_layer(lib, kind, url, f"bench{uuid.uuid4().hex[:8]}")
        if op == "sendrecv":
            self.run = _measure(lambda: owner.round_trips(lib, kind, url, seconds))
        elif op == "group_e2e":
            members = self.members
            processes = int(self.job.get("processes", 2))
            rounds = int(self.job.get("rounds", 10))
            self.run = _measure(
                lambda: owner.group_fanout(lib, kind, url, members, processes, rounds)
            )
        else:
            raise ValueError(f"unknown redis op {op!r}")


async def setup(job: Job) -> Scenario:
    """Set up the layer scenario ``job`` names (see the module docstring)."""
    scenario = Memory(job) if job["backend"] == "memory" else Redis(job)
    await scenario.open()
    return scenario


def main() -> None:
    """Serve layer jobs from stdin until told to stop."""
    serve_forever(setup)


if __name__ == "__main__":
    main()
