"""The JSON-lines job protocol shared by the worker processes.

A worker reads lines from stdin, one JSON object each, and answers on
stdout:

1. a job (``{"op": ..., ...}``): the worker sets it up (opens its
   connections, creates its layer) and answers ``{"phase": "ready", ...}``;
2. ``{"go": true}``, any number of times: it measures one slice and answers
   ``{"phase": "result", ...}``; the runner alternates slices between the
   systems' workers, so machine drift hits all of them alike. Other keys of
   the ``go`` line are options for that slice (e.g. an offered ``rate``),
   handed to the scenario's ``configure`` where it has one;
3. ``{"stop": true}``: it tears the job down and answers
   ``{"phase": "idle"}``.

A failure answers ``{"phase": "error", "error": ...}`` (then ``idle`` once
torn down). ``{"op": "exit"}`` or the end of stdin stops the worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["Scenario", "ScenarioFactory", "serve_forever"]


class Scenario(Protocol):
    """A set-up job: measure slices, then tear down."""

    def ready_info(self) -> dict[str, Any]: ...

    async def slice(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


ScenarioFactory = Callable[[dict[str, Any]], Awaitable[Scenario]]


async def _serve_stdin(setup: ScenarioFactory) -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def read_stdin() -> None:
        # A thread, because a pipe on stdin cannot be awaited portably.
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(lines.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    reader = loop.run_in_executor(None, read_stdin)

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def failed(exc: BaseException) -> None:
        reply({"phase": "error", "error": f"{type(exc).__name__}: {exc}"})

    while True:
        job = await lines.get()
        if job is None or job.get("op") == "exit":
            break
        scenario: Scenario | None = None
        try:
            scenario = await setup(job)
            reply({"phase": "ready", **scenario.ready_info()})
        except Exception as exc:
            failed(exc)
        while True:
            line = await lines.get()
            if line is None or line.get("stop"):
                break
            if scenario is None:
                reply({"phase": "error", "error": "the job failed to set up"})
                continue
            try:
                configure = getattr(scenario, "configure", None)
                if configure is not None:
                    configure(line)
                reply({"phase": "result", **await scenario.slice()})
            except Exception as exc:
                failed(exc)
        if scenario is not None:
            try:
                await scenario.aclose()
            except Exception as exc:
                failed(exc)
        reply({"phase": "idle"})
        if line is None:
            break
    reader.cancel()


def serve_forever(setup: ScenarioFactory) -> None:
    """Serve jobs from stdin with ``setup`` until told to stop, on uvloop
    when it is installed (as uvicorn would run it)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_stdin(setup))
        return
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve_stdin(setup))
    finally:
        loop.close()
