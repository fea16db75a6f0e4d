from __future__ import annotations

from schemata.runner import FAILED, Outcome, run_jobs


def test_workers_are_reused_for_many_schemas() -> None:
    seen: list[Outcome] = []

    report = run_jobs(
        "tests.jobs.echo",
        [f"t{i:02}" for i in range(8)],
        {},
        parallel=2,
        on_outcome=lambda outcome, done, left: seen.append(outcome),
    )

    assert report.counts == {"done": 8}
    assert sorted(outcome.schema for outcome in seen) == [f"t{i:02}" for i in range(8)]
    assert len({outcome.lines for outcome in seen}) <= 2


def test_a_dead_worker_fails_its_schemas_and_starts_no_more() -> None:
    report = run_jobs("tests.jobs.die", ["t00", "t01", "t02", "t03"], {}, parallel=2)

    assert report.counts == {FAILED: 2}  # the two running; the other two never started
    assert sorted(outcome.schema for outcome in report.failed) == ["t00", "t01"]
    assert all(
        (outcome.error or "").startswith("worker process died:") for outcome in report.failed
    )
