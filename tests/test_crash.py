"""SIGKILL a worker, or the command itself, at random points of migrate_schemata --parallel 2:
one rerun then leaves every schema equal to a reference (tests/crash_script.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TRIALS = 20


def test_every_schema_equals_the_reference_after_kills_and_one_rerun() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.crash_script", "--trials", str(TRIALS)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{2 * TRIALS} trials, 0 problems" in result.stdout
