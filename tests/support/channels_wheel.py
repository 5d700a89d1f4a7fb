"""The real Channels 4.3.2 wheel in a side environment, for comparisons.

Built once under ``.cache/channels-wheel/`` (git-ignored) with this
environment's Django and asgiref, or taken from ``ACHANNELS_CHANNELS_PYTHON``
(an interpreter that can import ``channels`` 4.3.2). Tests that need it skip
when it cannot be built, except under ``CI=true``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from harness.servers import REPO_ROOT

__all__ = ["channels_python"]

CHANNELS_VERSION = "4.3.2"
CACHE = REPO_ROOT / ".cache" / "channels-wheel"
BUILD_TIMEOUT = 600


def _requirements() -> list[str]:
    return [
        f"channels=={CHANNELS_VERSION}",
        "daphne",  # channels.testing imports it
        f"Django=={version('Django')}",
        f"asgiref=={version('asgiref')}",
    ]


def channels_python() -> Path:
    """An interpreter that imports the real Channels (built on first use)."""
    configured = os.environ.get("ACHANNELS_CHANNELS_PYTHON")
    if configured:
        return Path(configured)
    CACHE.mkdir(parents=True, exist_ok=True)
    python = CACHE / "venv" / "bin" / "python"
    stamp = CACHE / "installed.txt"
    wanted = "\n".join(_requirements())
    with open(CACHE / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one xdist worker builds, others wait
        if stamp.exists() and stamp.read_text() == wanted and python.exists():
            return python
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(CACHE / "venv")],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT,
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", *_requirements()],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT,
            )
        except (subprocess.SubprocessError, OSError) as error:
            reason = f"cannot build a venv with channels=={CHANNELS_VERSION}: {error}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        stamp.write_text(wanted)
    return python
