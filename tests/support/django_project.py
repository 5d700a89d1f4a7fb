"""Run the sample Django project (``tests/django_project``) in subprocesses.

Django settings are never configured in the pytest process: the Django-free
tests share it. Everything Django runs through ``manage.py`` or a server
process here, each with its own SQLite files under the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "PROJECT_DIR",
    "copy_project",
    "manage_command",
    "project_env",
    "run_django_tests",
    "run_django_tests_unchecked",
]

PROJECT_DIR = Path(__file__).resolve().parents[1] / "django_project"
#: Seconds a whole ``manage.py test`` run may take (under pytest's 120 s).
SUITE_TIMEOUT = 100


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a process of the sample project: its settings,
    databases in ``tmp_path``, plus ``extra`` (``TESTPROJECT_*`` switches)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "TESTPROJECT_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        TESTPROJECT_DB=str(tmp_path / "db.sqlite3"),
        TESTPROJECT_TEST_DB=str(tmp_path / "test-db.sqlite3"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage_command(*args: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """``python manage.py *args`` for the project in ``project_dir``."""
    return [sys.executable, str(project_dir / "manage.py"), *args]


def run_django_tests(label: str, tmp_path: Path, **extra: str) -> str:
    """Run ``manage.py test label`` (warnings are errors, as in the suite) and
    return its output; fail with that output if any Django test failed."""
    result = run_django_tests_unchecked(label, tmp_path, **extra)
    assert result.returncode == 0, f"manage.py test {label} failed:\n{result.stdout}"
    assert "\nOK" in result.stdout, result.stdout
    return result.stdout


def run_django_tests_unchecked(
    label: str, tmp_path: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py test label`` and return the finished process."""
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "manage.py",
            "test",
            label,
            "--noinput",
            "-v",
            "2",
        ],
        cwd=PROJECT_DIR,
        env=project_env(tmp_path, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=SUITE_TIMEOUT,
    )


def copy_project(destination: Path) -> Path:
    """Copy the sample project to ``destination`` (for tests that edit it)."""
    shutil.copytree(
        PROJECT_DIR,
        destination,
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"),
    )
    return destination
