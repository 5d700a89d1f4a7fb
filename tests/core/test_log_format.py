"""achannels' log lines carry level, time and logger name under a server
that configures only its own loggers (issue 13)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    from achannels.routing import ProtocolTypeRouter

    {setup}

    async def main():
        sent = []
        inbox = [{{"type": "lifespan.startup"}}, {{"type": "lifespan.shutdown"}}]

        async def receive():
            return inbox.pop(0)

        async def send(message):
            sent.append(message)

        await ProtocolTypeRouter({{}})({{"type": "lifespan"}}, receive, send)
        logging.getLogger("achannels.routing").warning("a warning")
        logging.getLogger("achannels.routing").info("an info line")

    asyncio.run(main())
    """
)


def run(setup: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(setup=setup)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stderr


def test_lifespan_startup_gives_unconfigured_achannels_logs_a_format() -> None:
    [line] = run().splitlines()
    assert line.endswith(" WARNING achannels.routing: a warning"), line
    assert line[:4].isdigit()  # the time comes first


def test_configured_logging_is_left_alone() -> None:
    setup = 'logging.basicConfig(format="custom %(levelname)s %(message)s")'
    assert run(setup).splitlines() == ["custom WARNING a warning"]


def test_logging_configured_after_startup_wins() -> None:
    # The handler steps aside once the root logger has one, so no line twice.
    script = SCRIPT.replace(
        'logging.getLogger("achannels.routing").warning',
        'logging.basicConfig(format="late %(message)s"); '
        'logging.getLogger("achannels.routing").warning',
    )
    result = subprocess.run(
        [sys.executable, "-c", script.format(setup="")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stderr.splitlines() == ["late a warning"]
