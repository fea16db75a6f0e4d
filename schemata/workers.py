"""Run one job per schema, in this process or in reusable worker processes.

Jobs are plain functions importable by dotted path: a worker process sets Django up once and
then runs many schemas' jobs, and a job only ever reports back picklable ``Outcome`` values.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import import_module
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

from django.conf import settings

from schemata.exceptions import SchemataError

#: How often a worker checks that its parent is alive (seconds).
WATCH_INTERVAL = 0.2


class Status(StrEnum):
    """How one schema's job ended; members equal their strings (``Status.DONE == "done"``)."""

    APPLIED = "applied"
    UP_TO_DATE = "up to date"
    DONE = "done"
    FAILED = "failed"


#: The status that the jobs and commands test for most.
FAILED = Status.FAILED


@dataclass(frozen=True, init=False)
class Outcome:
    """The result of one schema's job: its status, its output lines and any error."""

    schema: str
    status: Status
    lines: tuple[str, ...] = ()
    error: str | None = None

    def __init__(
        self,
        schema: str,
        status: Status | str,
        lines: tuple[str, ...] = (),
        error: str | None = None,
    ) -> None:
        # A status given as its string becomes the member; an unknown one fails here, in the
        # job that made it, rather than in the summary.
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "status", Status(status))
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "error", error)


@dataclass
class Report:
    """How many schemas ended in each status, the failures, and whether it was interrupted.

    Outcomes are not kept: their lines are printed as they come, so memory stays flat.
    """

    counts: Counter[Status] = field(default_factory=Counter)
    failed: list[Outcome] = field(default_factory=list)
    interrupted: bool = False


def run_jobs(
    job: str,
    schemas: list[str],
    options: dict[str, Any],
    *,
    parallel: int = 1,
    failfast: bool = False,
    finished: str | None = None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> Report:
    """Run the job at dotted path ``job`` as ``job(schema, options)`` for every schema.

    ``on_outcome(outcome)`` is called in this process as each schema finishes. SIGINT and
    SIGTERM stop the run at a schema boundary: jobs already running finish, no new one starts,
    and the report says it was interrupted. When a worker process
    dies, its schema is looked up with ``finished(schemas, options)`` (a dotted path, returning
    those of ``schemas`` the job completed) and failed only if not found complete; the other
    workers finish theirs, and no new schema starts.
    """
    report = Report()

    def record(outcome: Outcome) -> None:
        report.counts[outcome.status] += 1
        if outcome.status == Status.FAILED:
            report.failed.append(Outcome(outcome.schema, Status.FAILED, error=outcome.error))
        on_outcome(outcome)

    with _stop_requests() as stop_requested:

        def should_stop() -> bool:
            return stop_requested() or (failfast and bool(report.failed))

        if parallel <= 1:
            func = _load(job)
            for schema in schemas:
                if should_stop():
                    break
                record(func(schema, options))
        else:
            if not os.environ.get("DJANGO_SETTINGS_MODULE"):
                # A worker is a new interpreter: it can only load the settings by name.
                raise SchemataError(
                    "Worker processes load the settings by name, and DJANGO_SETTINGS_MODULE "
                    "is not set (settings.configure() cannot reach them): set it, or run "
                    "without --parallel."
                )
            with _Workers(min(parallel, len(schemas))) as workers:
                workers.run(job, schemas, options, should_stop, record, finished)
        report.interrupted = stop_requested()
    return report


class _Workers:
    """Worker processes, each set up once and then given one schema at a time.

    Spawned, not forked: a fork would copy open connections and threads. Only one job per
    worker is ever handed out, so a stop request leaves nothing queued behind the running
    jobs, and a worker that dies takes no schema but its own with it.
    """

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        names = {alias: config.get("NAME") for alias, config in dict.items(settings.DATABASES)}
        setup = (os.environ["DJANGO_SETTINGS_MODULE"], sys.path, names, os.getpid())
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        for _ in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_worker_main, args=(child_end, *setup), daemon=True)
            process.start()
            child_end.close()
            self.processes.append(process)
            self.pipes.append(parent_end)

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)  # done: exit
        deadline = time.monotonic() + (5 if exc_info[0] is None else 0)
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():  # interrupted at once: workers ignore SIGTERM and SIGINT
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()

    def run(
        self,
        job: str,
        schemas: list[str],
        options: dict[str, Any],
        should_stop: Callable[[], bool],
        record: Callable[[Outcome], None],
        finished: str | None,
    ) -> None:
        pending = iter(schemas)
        idle = list(range(len(self.processes)))
        busy: dict[int, str] = {}
        dead = False
        while True:
            while idle and not (dead or should_stop()):
                schema = next(pending, None)
                if schema is None:
                    break
                index = idle.pop()
                try:
                    self.pipes[index].send((job, schema, options))
                except OSError:  # died while idle: this schema was not started
                    dead = True
                    break
                busy[index] = schema
            if not busy:
                return
            waitables: list[Any] = [self.pipes[i] for i in busy]
            waitables += [self.processes[i].sentinel for i in busy]
            ready = wait(waitables, timeout=0.5)
            for index in [
                i for i in busy if self.pipes[i] in ready or self.processes[i].sentinel in ready
            ]:
                schema = busy.pop(index)
                try:
                    outcome = self.pipes[index].recv()
                except (EOFError, OSError):
                    dead = True  # killed, out of memory: start no new schema
                    outcome = self._died(index, schema, options, finished)
                else:
                    idle.append(index)
                record(outcome)

    def _died(
        self, index: int, schema: str, options: dict[str, Any], finished: str | None
    ) -> Outcome:
        process = self.processes[index]
        process.join()
        code = process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        completed: Callable[..., set[str]] = _load(finished) if finished else lambda *a: set()
        if schema in completed([schema], options):
            return Outcome(schema, Status.APPLIED, (f"the worker process died ({how}) after it",))
        return Outcome(schema, Status.FAILED, error=f"worker process died ({how}) while on it")


def _worker_main(
    pipe: Connection,
    settings_module: str,
    path: list[str],
    names: dict[str, Any],
    parent: int,
) -> None:
    # The parent handles Ctrl-C and SIGTERM for the whole run and lets running jobs finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    sys.path[:] = path
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    # Follow the parent's database names (the test runner renames them).
    for alias, name in names.items():
        settings.DATABASES[alias]["NAME"] = name
    _serve(pipe)


def _serve(pipe: Connection) -> None:
    """Run the jobs the parent sends until it sends ``None`` or its end of the pipe closes."""
    while True:
        try:
            task = pipe.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        job, schema, options = task
        try:
            outcome = _load(job)(schema, options)
        except Exception as exc:  # a job reports its own failures; this is a bug in one
            outcome = Outcome(schema, Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        pipe.send(outcome)


def _watch_parent(parent: int) -> None:
    """Exit as soon as the parent is gone (killed by any signal, kill -9 included): the
    schema in progress is rolled back by the server, and a rerun finishes it."""
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL)
    os._exit(1)


def _load(path: str) -> Callable[..., Any]:
    module, name = path.rsplit(".", 1)
    return getattr(import_module(module), name)  # type: ignore[no-any-return]


@contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """Turn the first SIGINT/SIGTERM into a stop request; a second Ctrl-C interrupts at once."""
    requested: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        print(
            "Stopping after the schemas in progress (Ctrl-C again to abort now)...",
            file=sys.stderr,
            flush=True,
        )

    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may set signal handlers; elsewhere signals are not ours.
        yield lambda: False
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
