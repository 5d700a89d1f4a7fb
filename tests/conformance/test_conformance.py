"""Differential conformance: each scenario in ``scenarios/`` runs on the real
Channels 4.3.2 and on achannels; what achannels users observe must match
(see ``runner.py`` for the side environment and ``scenarios/_transcript.py``
for how entries compare).

Without a package registry the side environment cannot be built: the tests
skip then, and fail under ``CI=true``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conformance.runner import (
    BUILD_TIMEOUT,
    RUN_TIMEOUT,
    SCENARIOS,
    SideEnvironmentError,
    compare,
    run_on_achannels,
    run_on_channels,
    side_python,
)

SCENARIO_FILES = sorted(SCENARIOS.glob("[!_]*.py"))

# The first test of a worker may build the side environment (about 25 s on
# a loaded 2-core machine, more on a cold pip cache) before its two runs.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 2 * RUN_TIMEOUT)


@pytest.fixture(scope="session")
def channels_available() -> None:
    try:
        side_python()
    except SideEnvironmentError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(f"no side environment with the real Channels: {exc}")


@pytest.mark.parametrize(
    "scenario", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES]
)
def test_achannels_observes_what_channels_does(
    scenario: Path, channels_available: None, tmp_path: Path
) -> None:
    theirs = run_on_channels(scenario, tmp_path / "channels")
    ours = run_on_achannels(scenario, tmp_path / "achannels")
    assert theirs, "the scenario recorded nothing"
    problems = compare(theirs, ours)
    assert not problems, "\n".join(problems)
