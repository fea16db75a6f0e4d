"""Run one job per schema, in this process or in reusable worker processes.

Jobs are plain functions importable by dotted path: a worker process sets Django up once and
then runs many schemas' jobs, and a job only ever reports back picklable ``Outcome`` values.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from types import FrameType
from typing import Any

from django.conf import settings

#: What a job returns: "applied", "up to date", "done" or "failed".
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """The result of one schema's job: its status, its output lines and any error."""

    schema: str
    status: str
    lines: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class Report:
    """How many schemas ended in each status, the failures, and whether it was interrupted.

    Outcomes are not kept: their lines are printed as they come, so memory stays flat.
    """

    counts: Counter[str] = field(default_factory=Counter)
    failed: list[Outcome] = field(default_factory=list)
    interrupted: bool = False

    @property
    def done(self) -> int:
        return sum(self.counts.values())


def run_jobs(
    job: str,
    schemas: list[str],
    options: dict[str, Any],
    *,
    parallel: int = 1,
    failfast: bool = False,
    on_outcome: Callable[[Outcome, int, float], None] = lambda *args: None,
) -> Report:
    """Run the job at dotted path ``job`` as ``job(schema, options)`` for every schema.

    ``on_outcome(outcome, done, seconds_left)`` is called in this process as each schema
    finishes. SIGINT and SIGTERM stop the run at a schema boundary: jobs already running
    finish, no new one starts, and the report says it was interrupted.
    """
    report = Report()
    started = time.monotonic()

    def record(outcome: Outcome) -> None:
        report.counts[outcome.status] += 1
        if outcome.status == FAILED:
            report.failed.append(Outcome(outcome.schema, FAILED, error=outcome.error))
        done = report.done
        left = (time.monotonic() - started) / done * (len(schemas) - done)
        on_outcome(outcome, done, left)

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
            _run_in_workers(job, schemas, options, parallel, should_stop, record)
        report.interrupted = stop_requested()
    return report


def _run_in_workers(
    job: str,
    schemas: list[str],
    options: dict[str, Any],
    parallel: int,
    should_stop: Callable[[], bool],
    record: Callable[[Outcome], None],
) -> None:
    # Spawned, not forked: a fork would copy open connections and threads. Each worker is
    # set up once and reused, and only `parallel` jobs are ever handed out at a time, so a
    # stop request leaves nothing queued behind the running jobs.
    names = {alias: config.get("NAME") for alias, config in dict.items(settings.DATABASES)}
    pending = iter(schemas)
    running: dict[Future[Outcome], str] = {}
    with ProcessPoolExecutor(
        max_workers=parallel,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.environ.get("DJANGO_SETTINGS_MODULE"), sys.path, names),
    ) as pool:
        broken = False
        while True:
            while len(running) < parallel and not (broken or should_stop()):
                schema = next(pending, None)
                if schema is None:
                    break
                running[pool.submit(_run_job, job, schema, options)] = schema
            if not running:
                return
            finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                schema = running.pop(future)
                try:
                    record(future.result())
                except BrokenProcessPool as exc:
                    # A worker died (killed, out of memory): its schemas failed, and no new
                    # one can start in this pool.
                    broken = True
                    record(Outcome(schema, FAILED, error=f"worker process died: {exc}"))


def _init_worker(settings_module: str | None, path: list[str], names: dict[str, Any]) -> None:
    # The parent handles Ctrl-C and SIGTERM for the whole run and lets running jobs finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.path[:] = path
    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()
    # Follow the parent's database names (the test runner renames them).
    for alias, name in names.items():
        dict.__getitem__(settings.DATABASES, alias)["NAME"] = name


def _run_job(job: str, schema: str, options: dict[str, Any]) -> Outcome:
    return _load(job)(schema, options)


def _load(path: str) -> Callable[..., Outcome]:
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
