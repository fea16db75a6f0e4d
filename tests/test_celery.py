from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group
from celery.beat import Scheduler
from celery.result import AsyncResult
from django.db import connections

import schemata
from schemata.celery import HEADER
from tests.celery_app import (
    app,
    backend_pid,
    fail,
    retry_once,
    schema_connections,
    where,
    where_received,
    write,
)
from tests.services import python_output
from tests.testapp.models import Note

REDIS_DB = 9
TABLES = ("alpha.testapp_note", "beta.testapp_note", "public.testapp_note")


class Worker:
    """A real ``celery worker`` process on a queue of its own, logging to a file."""

    def __init__(self, broker: str, queue: str, tmp: Path, *options: str) -> None:
        self.queue = queue
        self.log = tmp / f"{queue}.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": worker_database_url(),
            "SCHEMATA_TEST_BROKER": broker,
            "SCHEMATA_TEST_QUEUE": queue,
        }
        command = [
            str(Path(sys.executable).with_name("celery")),
            "--app=tests.celery_app",
            "worker",
            *options,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            f"--queues={queue}",
            "--loglevel=INFO",
            f"--hostname={queue}@%h",
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, result: AsyncResult, timeout: float = 15) -> Any:
        """Wait for ``result``; fail with the worker's log if the worker died or took too long."""
        deadline = time.monotonic() + timeout
        while not result.ready():
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no result after {timeout}s; worker log:\n{self.output()}")
            time.sleep(0.01)
        return result.get(timeout=1)

    def wait_stopped(self) -> None:
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def worker_database_url() -> str:
    """DATABASE_URL, pointing at the test database pytest-django created."""
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    name = connections["default"].settings_dict["NAME"]
    return urllib.parse.urlunsplit(url._replace(path=f"{url.path.rsplit('/', 1)[0]}/{name}"))


@pytest.fixture(scope="session")
def workers(django_db_setup: None, redis_url: str) -> Iterator[tuple[Worker, Worker]]:
    """Start a solo and a prefork worker on the private Redis; stop both after the session."""
    # A database of its own on the shared server: other tests clear theirs.
    broker = f"redis+socket://{redis_url.removeprefix('unix://')}?virtual_host={REDIS_DB}"
    solo_queue = f"schemata-solo-{os.getpid()}"
    app.conf.update(broker_url=broker, result_backend=broker, task_default_queue=solo_queue)
    tmp = Path(tempfile.mkdtemp(prefix="schemata-celery."))
    started: list[Worker] = []
    try:
        # Side by side: each takes about a second to start and to stop.
        started.append(Worker(broker, solo_queue, tmp, "--pool=solo"))
        prefork_queue = f"schemata-prefork-{os.getpid()}"
        started.append(Worker(broker, prefork_queue, tmp, "--pool=prefork", "--concurrency=2"))
        for worker in started:
            worker.get(where.apply_async(queue=worker.queue), timeout=30)
        yield started[0], started[1]
    finally:
        for worker in started:
            worker.process.send_signal(signal.SIGTERM)
        for worker in started:
            worker.wait_stopped()
        shutil.rmtree(tmp, ignore_errors=True)


# Both request db: pytest-django creates the test database only for sessions with a test
# that asks for one, and the workers use it.
@pytest.fixture
def worker(workers: tuple[Worker, Worker], db: None) -> Worker:
    """The solo-pool worker: every task runs in its one process, one after another."""
    return workers[0]


@pytest.fixture
def prefork_worker(workers: tuple[Worker, Worker], db: None) -> Worker:
    """The prefork worker: tasks run in two forked pool processes."""
    return workers[1]


@pytest.fixture
def clean_notes(transactional_db: None) -> Iterator[None]:
    """Empty the notes the worker committed in alpha, beta and public, before and after."""

    def truncate() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")

    truncate()
    yield
    truncate()
    connections.close_all()


def titles(alias: str) -> list[str]:
    return list(Note.objects.using(alias).values_list("title", flat=True))


def schemas_of(result: dict[str, Any]) -> list[str | None]:
    """The schema of a ``where`` result and of every ``where`` result it received."""
    found = [result["schema"]]
    for previous in result["results"]:
        items = previous if isinstance(previous, list) else [previous]
        for item in items:
            found += schemas_of(item)
    return found


@pytest.mark.usefixtures("clean_notes")
class TestWrites:
    def test_delay_from_alpha_writes_into_alpha_only(self, worker: Worker) -> None:
        with schemata.override("alpha"):
            result = write.delay("sent from alpha")

        assert worker.get(result) == "alpha"
        assert titles("alpha") == ["sent from alpha"]
        assert titles("beta") == []
        assert titles("default") == []

    def test_apply_async_from_beta_writes_into_beta_only(self, worker: Worker) -> None:
        with schemata.override("beta"):
            result = write.apply_async(("sent from beta",), countdown=0)

        assert worker.get(result) == "beta"
        assert titles("beta") == ["sent from beta"]
        assert titles("alpha") == []
        assert titles("default") == []

    def test_an_unknown_schema_fails_the_task_before_it_runs(self, worker: Worker) -> None:
        result = write.apply_async(("orphan",), headers={HEADER: "removed"})

        with pytest.raises(schemata.UnknownSchema, match="'removed'"):
            worker.get(result)
        assert result.state == "FAILURE"
        assert titles("default") == []


def test_a_task_sent_with_no_schema_runs_with_none(worker: Worker) -> None:
    assert worker.get(where.delay())["schema"] is None


def test_an_explicit_header_overrides_the_active_schema(worker: Worker) -> None:
    with schemata.override("alpha"):
        result = where.apply_async(headers={HEADER: "beta"})

    assert worker.get(result)["schema"] == "beta"


def test_an_explicit_empty_header_sends_with_no_schema(worker: Worker) -> None:
    with schemata.override("alpha"):
        result = where.apply_async(headers={HEADER: None})

    assert worker.get(result)["schema"] is None


def test_the_next_task_sent_with_no_schema_runs_with_none_in_the_same_process(
    worker: Worker,
) -> None:
    with schemata.override("alpha"):
        first = worker.get(where.delay())

    second = worker.get(where_received.delay())

    assert first["schema"] == "alpha"
    assert second == {"received": None, "running": None, "pid": first["pid"]}


def test_the_worker_holds_no_schema_after_a_task(worker: Worker) -> None:
    with schemata.override("alpha"):
        worker.get(where.delay())

    assert worker.get(where_received.delay())["received"] is None


def test_the_worker_holds_no_schema_after_a_failed_task(worker: Worker) -> None:
    with schemata.override("alpha"), pytest.raises(ValueError, match="failed in alpha"):
        worker.get(fail.delay())

    assert worker.get(where_received.delay())["received"] is None


def test_a_retried_task_runs_again_in_its_schema(worker: Worker) -> None:
    with schemata.override("beta"):
        result = retry_once.delay()

    assert worker.get(result) == {"schema": "beta", "retries": 1}
    assert worker.get(where_received.delay())["received"] is None


def test_each_task_of_a_chain_runs_in_the_senders_schema(worker: Worker) -> None:
    with schemata.override("alpha"):
        result = chain(where.s(), where.s(), where.s()).delay()

    assert schemas_of(worker.get(result)) == ["alpha", "alpha", "alpha"]


def test_each_task_of_a_group_runs_in_the_senders_schema(worker: Worker) -> None:
    with schemata.override("beta"):
        result = group(where.s(), where.s(), where.s()).delay()

    assert [item["schema"] for item in worker.get(result)] == ["beta", "beta", "beta"]


def test_a_chords_header_and_body_run_in_the_senders_schema(worker: Worker) -> None:
    with schemata.override("alpha"):
        result = chord([where.s(), where.s()], where.s()).delay()

    assert schemas_of(worker.get(result)) == ["alpha", "alpha", "alpha"]


def test_a_chain_sent_with_no_schema_runs_with_none(worker: Worker) -> None:
    result = chain(where.s(), where.s()).delay()

    assert schemas_of(worker.get(result)) == [None, None]


def beat_scheduler() -> Scheduler:
    """Beat's scheduler, fed a schedule as ``beat_schedule`` would be."""
    scheduler = Scheduler(app, lazy=True)
    scheduler.update_from_dict(
        {
            "beta report": {
                "task": where.name,
                "schedule": 1.0,
                "options": {"headers": {HEADER: "beta"}},
            },
            "housekeeping": {"task": where.name, "schedule": 1.0},
        }
    )
    return scheduler


def test_a_periodic_task_runs_in_the_schema_its_options_name(worker: Worker) -> None:
    scheduler = beat_scheduler()

    result = scheduler.apply_async(scheduler.schedule["beta report"], advance=False)

    assert worker.get(result)["schema"] == "beta"


def test_a_periodic_task_without_a_schema_runs_with_none(worker: Worker) -> None:
    scheduler = beat_scheduler()

    result = scheduler.apply_async(scheduler.schedule["housekeeping"], advance=False)

    assert worker.get(result)["schema"] is None


def backend_alive(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


def test_the_tasks_schema_connection_goes_back_to_the_pool_after_it(worker: Worker) -> None:
    with schemata.override("alpha"):
        first = worker.get(backend_pid.delay())
        second = worker.get(backend_pid.delay())

    # Given back after the first task, and handed out again, still on alpha, for the next.
    assert second == first
    assert backend_alive(first)


def test_the_worker_keeps_no_connection_object_for_earlier_tasks_schemas(worker: Worker) -> None:
    with schemata.override("alpha"):
        worker.get(backend_pid.delay())
    with schemata.override("beta"):
        result = schema_connections.delay()

    assert worker.get(result) == ["beta"]


def test_apply_runs_inline_in_the_callers_schema() -> None:
    with schemata.override("beta"):
        result = where.apply()

    assert result.get()["schema"] == "beta"
    assert schemata.get_current_schema() is None


def test_apply_honours_an_explicit_header() -> None:
    with schemata.override("beta"):
        result = where.apply(headers={HEADER: "alpha"})

        assert result.get()["schema"] == "alpha"
        assert schemata.get_current_schema().name == "beta"  # type: ignore[union-attr]


def test_installing_twice_guards_each_task_once() -> None:
    before = app.loader.on_task_init

    schemata.celery.install(app)

    assert app.loader.on_task_init is before


def test_importing_schemata_does_not_import_celery(tmp_path: Path) -> None:
    code = "import sys, schemata; print([m for m in sys.modules if m.startswith('celery')])"

    assert python_output(code, tmp_path) == "[]\n"


def test_prefork_pool_processes_run_each_task_in_its_senders_schema(
    prefork_worker: Worker,
) -> None:
    sent = ["alpha", None, "beta", None, "alpha", "beta", None, None]
    results = []
    for name in sent:
        with schemata.override(name):
            results.append(where.apply_async(queue=prefork_worker.queue))

    done = [prefork_worker.get(result) for result in results]

    assert [item["schema"] for item in done] == sent
    assert prefork_worker.process.pid not in {item["pid"] for item in done}


def test_prefork_pool_processes_refuse_an_unknown_schema(prefork_worker: Worker) -> None:
    result = where.apply_async(queue=prefork_worker.queue, headers={HEADER: "removed"})

    with pytest.raises(schemata.UnknownSchema, match="'removed'"):
        prefork_worker.get(result)
