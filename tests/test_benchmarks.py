"""The benchmarks still run against the package as it is: each script, on a tiny workload.

They drive the package's internals (the pool, the commands' output) and are run by hand, so a
change that breaks one would otherwise go unnoticed until the next measurement. Each script
checks its own results (``migrations.py`` that every schema holds every migration,
``provisioning.py`` that the new schemas are up to date) and exits non-zero when they are
wrong. Not here: ``connections.py`` (it builds wrk and installs django-tenants) and
``scaleout.py`` (a Citus cluster, a minute and a half); ``tests/test_citus.py`` and
``tests/test_pool.py`` cover what they drive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

RUNS = {
    "affinity": (
        ["--schemas", "60", "--tables", "2", "--requests", "400"],
        ["| requests: us per request |", "| slots |", "| newest |"],
    ),
    "migrations": (
        ["--sizes", "2", "--domains", "10", "--fresh-reps", "1", "--noop-reps", "1"]
        + ["--reps", "1"],
        ["| 2       |    1 |", "| migrate_schemata --schema t0 |"],
    ),
    "provisioning": (["--schemas", "2"], ["clone_schema from t0"]),
    "request_overhead": (
        ["--sizes", "10", "--requests", "50", "--reps", "1", "--warmup", "5"],
        ["| django-schemata", "| plain Django"],
    ),
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_and_prints_its_tables(script: str) -> None:
    argv, expected = RUNS[script]
    # Measured apart from the suite: the scripts import the package from this checkout.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = " ".join(result.stdout.split())
    for text in expected:
        assert " ".join(text.split()) in output, result.stdout[-3000:]
