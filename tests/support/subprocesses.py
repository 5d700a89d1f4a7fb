"""Run Python in a fresh interpreter, for checks that must not share this
process's imports or settings (Django configuration, ``sys.modules``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

__all__ = ["run_python"]


def run_python(code: str, **env: str) -> Any:
    """Run ``code`` (dedented) with extra ``env``; fail with its stderr if it
    fails, else return the JSON it printed on its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
