from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from schemata.workers import FAILED, Outcome, Status, run_jobs


def test_workers_are_reused_for_many_schemas() -> None:
    seen: list[Outcome] = []

    report = run_jobs(
        "tests.jobs.echo",
        [f"t{i:02}" for i in range(8)],
        {},
        parallel=2,
        on_outcome=seen.append,
    )

    assert report.counts == {"done": 8}
    assert sorted(outcome.schema for outcome in seen) == [f"t{i:02}" for i in range(8)]
    pids = {outcome.lines for outcome in seen}
    assert len(pids) <= 2
    assert (f"pid {os.getpid()}",) not in pids


def test_parallel_jobs_run_at_once_in_that_many_other_processes(tmp_path: Path) -> None:
    seen: list[Outcome] = []

    report = run_jobs(
        "tests.jobs.meet",
        ["t00", "t01", "t02"],
        {"dir": str(tmp_path), "count": 3},
        parallel=3,
        on_outcome=seen.append,
    )

    assert report.counts == {"done": 3}
    pids = {outcome.lines[0] for outcome in seen}
    assert len(pids) == 3
    assert f"pid {os.getpid()}" not in pids


def test_a_dead_worker_fails_its_schemas_and_starts_no_more() -> None:
    report = run_jobs("tests.jobs.die", ["t00", "t01", "t02", "t03"], {}, parallel=2)

    assert report.counts == {FAILED: 2}  # the two running; the other two never started
    assert sorted(outcome.schema for outcome in report.failed) == ["t00", "t01"]
    assert all(
        outcome.error == "worker process died (exit 3) while on it" for outcome in report.failed
    )


def test_a_dead_worker_fails_only_its_own_schema_while_the_other_finishes(
    tmp_path: Path,
) -> None:
    report = run_jobs(
        "tests.jobs.die_on_victim",
        ["t00", "t01", "t02"],
        {"victim": "t01", "dir": str(tmp_path)},
        parallel=2,
    )

    assert [outcome.schema for outcome in report.failed] == ["t01"]
    assert report.counts == {"done": 1, FAILED: 1}  # t00 finished; t02 never started


def exit_once_idle(schema: str, options: dict[str, Any]) -> Outcome:
    """A job (run by the workers from this module): t00 reports, then its worker exits a
    moment later, waiting for its next schema; the others take a second."""
    if schema == "t00":
        threading.Timer(0.1, os._exit, [3]).start()
    else:
        time.sleep(1)
    return Outcome(schema, "done", (str(os.getpid()),))


def test_a_worker_that_died_idle_is_given_no_schema_and_no_more_start() -> None:
    seen: list[str] = []

    def record(outcome: Outcome) -> None:
        seen.append(outcome.schema)
        # Its worker is gone before it is handed the next schema: reaped, so every thread
        # of it has ended and its end of the pipe is closed (a zombie's threads may not).
        deadline = time.monotonic() + 10
        while outcome.schema == "t00" and any(
            child.pid == int(outcome.lines[0]) for child in multiprocessing.active_children()
        ):
            assert time.monotonic() < deadline, "the worker did not exit"
            time.sleep(0.01)

    report = run_jobs(
        "tests.test_workers.exit_once_idle",
        ["t00", "t01", "t02", "t03"],
        {},
        parallel=2,
        on_outcome=record,
    )

    assert seen == ["t00", "t01"]  # the other worker finished its own; t02, t03 never started
    assert report.counts == {"done": 2}
    assert report.failed == []


def test_a_schema_the_dead_worker_had_completed_is_not_failed(tmp_path: Path) -> None:
    report = run_jobs(
        "tests.jobs.finish_then_die",
        ["t00"],
        {"dir": str(tmp_path)},
        parallel=2,
        finished="tests.jobs.completed",
    )

    assert report.counts == {"applied": 1}
    assert report.failed == []


def test_workers_exit_soon_after_their_parent_is_killed(tmp_path: Path) -> None:
    script = (
        "import django; django.setup()\n"
        "from schemata.workers import run_jobs\n"
        f"run_jobs('tests.jobs.sleep', ['t00', 't01'], {{'dir': {str(tmp_path)!r}}}, "
        "parallel=2)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        pid_files = [tmp_path / "t00.pid", tmp_path / "t01.pid"]
        deadline = time.monotonic() + 30
        while not all(path.exists() and path.read_text() for path in pid_files):
            assert time.monotonic() < deadline, "the workers never started their jobs"
            time.sleep(0.05)
        workers = [int(path.read_text()) for path in pid_files]

        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 3
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)

        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        parent.kill()
        parent.wait()
        for pid_file in tmp_path.glob("*.pid"):
            if pid_file.read_text() and _alive(int(pid_file.read_text())):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_job_that_raises_fails_its_schema_and_the_worker_goes_on() -> None:
    report = run_jobs("tests.jobs.boom", ["t00", "t01", "t02"], {}, parallel=2)

    assert report.counts == {FAILED: 3}
    assert report.failed[0].error == f"RuntimeError: no outcome for {report.failed[0].schema}"


def test_a_status_given_as_its_string_becomes_the_member_and_still_equals_it() -> None:
    outcome = Outcome("t00", "up to date")

    assert outcome.status == "up to date"
    assert outcome.status is Status.UP_TO_DATE
    assert f"{outcome.status}" == "up to date"


def test_an_unknown_status_is_refused_where_the_outcome_is_made() -> None:
    with pytest.raises(ValueError, match="'upto date' is not a valid Status"):
        Outcome("t00", "upto date")


def test_an_error_in_the_parent_kills_the_busy_workers_at_once(tmp_path: Path) -> None:
    pid_file = tmp_path / "t01.pid"

    def fail(outcome: Outcome) -> None:
        # Once the other worker is surely busy with t01.
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError(f"stopped at {outcome.schema}")

    with pytest.raises(RuntimeError, match="stopped at t00"):
        run_jobs(
            "tests.jobs.quick_or_sleep",
            ["t00", "t01"],
            {"dir": str(tmp_path)},
            parallel=2,
            on_outcome=fail,
        )

    sleeper = int(pid_file.read_text())
    assert not _alive(sleeper)


def test_a_second_ctrl_c_interrupts_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    handler = signal.getsignal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_jobs("tests.jobs.interrupt_twice", ["t00", "t01"], {})

    assert capsys.readouterr().err == (
        "Stopping after the schemas in progress (Ctrl-C again to abort now)...\n"
    )
    assert signal.getsignal(signal.SIGINT) is handler


def test_jobs_run_from_another_thread_leave_the_signal_handlers_alone() -> None:
    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    result: list[Any] = []

    thread = threading.Thread(
        target=lambda: result.append(run_jobs("tests.jobs.echo", ["t00", "t01"], {}))
    )
    thread.start()
    thread.join()

    assert result[0].counts == {"done": 2}
    assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == handlers


@pytest.mark.django_db
def test_parallel_runs_need_the_settings_module_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a project configured with settings.configure(): workers could not set Django up.
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    out = StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command("each_schema", "--parallel", "2", "whereami", stdout=out, stderr=out)

    assert str(excinfo.value) == (
        "Worker processes load the settings by name, and DJANGO_SETTINGS_MODULE is not set "
        "(settings.configure() cannot reach them): set it, or run without --parallel."
    )
    assert "Summary" not in out.getvalue()


def applied(schema: str, options: dict[str, Any]) -> Outcome:
    """A job that succeeds at once."""
    return Outcome(schema, Status.APPLIED)


def test_a_worker_stops_when_the_parent_closes_its_end_of_the_pipe() -> None:
    from schemata.workers import _serve

    parent_end, child_end = multiprocessing.Pipe()
    returned: list[bool] = []

    def serve() -> None:
        _serve(child_end)
        returned.append(True)

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    parent_end.send(("tests.test_workers.applied", "t00", {}))
    outcome = parent_end.recv()

    parent_end.close()  # a parent that died, or gave up, without saying goodbye
    worker.join(timeout=5)

    assert (outcome.schema, outcome.status) == ("t00", Status.APPLIED)
    assert returned == [True]  # it returned, instead of raising EOFError
