"""Run a conformance scenario on the real Channels and on achannels, and
compare what each observed.

The real Channels 4.3.2 lives in a side environment of its own, built once
under ``.cache/conformance/`` (git-ignored) and reused while its
requirements are unchanged: ``channels==4.3.2``, ``channels-redis==4.3.0``
and ``daphne`` (Channels' ``testing`` package imports it), with the Django
and asgiref versions of this environment, so that the only difference
between the two sides is Channels against achannels. achannels runs in this
environment's interpreter, where ``install_as_channels()`` makes the
scenario's ``channels`` and ``channels_redis`` imports ours.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.servers import REPO_ROOT

__all__ = [
    "BUILD_TIMEOUT",
    "RUN_TIMEOUT",
    "SCENARIOS",
    "SideEnvironmentError",
    "compare",
    "run_on_achannels",
    "run_on_channels",
    "side_python",
]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CACHE = REPO_ROOT / ".cache" / "conformance"
CHANNELS_VERSION = "4.3.2"
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 60

# Runs a scenario as __main__ after the alias is in place. The warning about
# the installed real channels is expected here: channels-redis pulls it in.
LAUNCHER = """
import runpy, sys, warnings
import achannels
with warnings.catch_warnings():
    warnings.simplefilter("ignore", achannels.ChannelsInstalledWarning)
    achannels.install_as_channels()
path = sys.argv[1]
sys.argv[:] = [path]
sys.path.insert(0, path.rpartition("/")[0])
runpy.run_path(path, run_name="__main__")
"""


def requirements() -> list[str]:
    """What the side environment holds."""
    return [
        f"channels=={CHANNELS_VERSION}",
        "channels-redis==4.3.0",
        "daphne",
        f"Django=={version('Django')}",
        f"asgiref=={version('asgiref')}",
    ]


class SideEnvironmentError(RuntimeError):
    """Raised when the side environment with the real Channels cannot be
    built (pip failed: no package registry, or a requirement is missing)."""


def side_python() -> Path:
    """The interpreter of the side environment, built on first use.

    Safe under pytest-xdist: one worker builds while the others wait on a
    file lock, then all use the result.
    """
    key = hashlib.sha256(
        json.dumps([sys.version, requirements()]).encode()
    ).hexdigest()[:12]
    venv = CACHE / f"channels-{CHANNELS_VERSION}-{key}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        started = time.monotonic()
        _build(venv)
        stamp.write_text(f"built in {time.monotonic() - started:.1f}s\n")
    return python


def _build(venv: Path) -> None:
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", "--clear", str(venv)],
        [
            str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
            "--disable-pip-version-check", "--retries", "5", *requirements(),
        ],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run(
            step,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise SideEnvironmentError(
                f"building {venv} failed at {step[2:5]}:\n{result.stderr[-3000:]}"
            )


def _run(argv: list[str], scratch: Path) -> list[dict[str, Any]]:
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTHON"))
    }
    env["CONFORMANCE_TMP"] = str(scratch)
    try:
        result = subprocess.run(
            argv,
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{argv[0]} did not exit within {RUN_TIMEOUT} s:\n{exc.stdout!r}"
        ) from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise AssertionError(
            f"{argv[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    transcript: list[dict[str, Any]] = json.loads(lines[-1])["transcript"]
    return transcript


def run_on_channels(scenario: Path, scratch: Path) -> list[dict[str, Any]]:
    """The transcript of ``scenario`` on the real Channels."""
    return _run([str(side_python()), str(scenario)], scratch)


def run_on_achannels(scenario: Path, scratch: Path) -> list[dict[str, Any]]:
    """The transcript of ``scenario`` on achannels, as ``channels``."""
    return _run([sys.executable, "-c", LAUNCHER, str(scenario)], scratch)


_WORKER_SERVER_MEMBERS = frozenset(
    {
        "application_checker",
        "application_checker_interval",
        "application_exception",
        "application_send",
        "delete_application_instance",
        "delete_oldest_application_instance",
        "get_or_create_application_instance",
    }
)

#: Names achannels lacks on purpose, by the label of the step that lists them;
#: each is documented with its reason in docs/migration.md ("Deliberate
#: differences"). Steps on these names (``<owner>.<name>...``) are not
#: required either.
DELIBERATE_ABSENT: dict[str, frozenset[str]] = {
    # Channels' Worker inherits asgiref's StatelessServer instance pool and
    # its polling checker; achannels' Worker runs one instance per channel
    # with its own task ownership, so these internals do not exist.
    "channels.worker.Worker members": _WORKER_SERVER_MEMBERS,
    "channels.management.commands.runworker.Worker members": _WORKER_SERVER_MEMBERS,
    # Daphne's server process; achannels' live server runs on uvicorn (no
    # Daphne, by design).
    "channels.testing.ChannelsLiveServerTestCase members": frozenset(
        {"ProtocolServerProcess"}
    ),
}


def _deliberately_absent(label: str) -> bool:
    for listing, names in DELIBERATE_ABSENT.items():
        owner = listing.removesuffix(" members")
        for name in names:
            step = f"{owner}.{name}"
            if label == step or label.startswith((f"{step}(", f"{step}.", f"{step} ")):
                return True
    return False


def compare(channels: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    """Where achannels' transcript differs from Channels', one line each.

    Entries are matched by label: a step Channels recorded and achannels did
    not (the scenario took another branch) is a difference; a step only
    achannels recorded is not (ours may offer more, such as extra names).
    """
    mine = {entry["label"]: entry for entry in ours}
    problems = []
    missing = []
    for theirs in channels:
        label = theirs["label"]
        if label not in mine:
            if not _deliberately_absent(label):
                missing.append(label)
            continue
        problem = _compare_entry(theirs, mine[label], DELIBERATE_ABSENT.get(label))
        if problem:
            problems.append(f"{label}: {problem}")
    if missing:
        problems.append(f"steps achannels did not reach: {missing}")
    return problems


def _compare_entry(
    theirs: dict[str, Any],
    mine: dict[str, Any],
    absent: frozenset[str] | None = None,
) -> str | None:
    kind = next(key for key in theirs if key != "label")
    if kind not in mine:
        return f"Channels: {kind} {theirs[kind]!r}; achannels: {_describe(mine)}"
    expected, actual = theirs[kind], mine[kind]
    if kind == "equal" and expected != actual:
        return f"Channels {expected!r}, achannels {actual!r}"
    if kind == "prefix" and not actual.startswith(expected):
        return f"achannels {actual!r} does not start with Channels' {expected!r}"
    if kind == "superset":
        missing = sorted(set(expected) - set(actual) - (absent or frozenset()))
        if missing:
            return f"achannels lacks {missing}"
    if kind == "raised":
        missing = [name for name in expected["types"] if name not in actual["types"]]
        if missing:
            return (
                f"Channels raised {expected['types'][0]}, achannels "
                f"{actual['types'][0]} ({actual['message']!r}), not a {missing}"
            )
        if not actual["message"].startswith(expected["message"]):
            return (
                f"message {actual['message']!r} does not start with Channels' "
                f"{expected['message']!r}"
            )
    return None


def _describe(entry: dict[str, Any]) -> str:
    kind = next(key for key in entry if key != "label")
    return f"{kind} {entry[kind]!r}"
