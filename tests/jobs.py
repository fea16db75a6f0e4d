"""Jobs for the tests of schemata.workers, importable by the worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from schemata.workers import Outcome


def echo(schema: str, options: dict[str, Any]) -> Outcome:
    return Outcome(schema, "done", (f"pid {os.getpid()}",))


def meet(schema: str, options: dict[str, Any]) -> Outcome:
    """Say which process runs the schema, then wait until ``count`` processes have said so."""
    met = Path(options["dir"])
    (met / f"{os.getpid()}.pid").touch()
    deadline = time.monotonic() + 10
    while len(list(met.glob("*.pid"))) < options["count"]:
        if time.monotonic() > deadline:
            return Outcome(schema, "failed", error=f"alone in process {os.getpid()}")
        time.sleep(0.01)
    return Outcome(schema, "done", (f"pid {os.getpid()}",))


def die(schema: str, options: dict[str, Any]) -> Outcome:
    os._exit(3)  # a worker killed in the middle of a schema


def die_on_victim(schema: str, options: dict[str, Any]) -> Outcome:
    """Kill this worker on the victim schema while another worker is busy with its own."""
    started = Path(options["dir"])
    if schema == options["victim"]:
        deadline = time.monotonic() + 30
        while not any(started.glob("*.started")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(3)
    (started / f"{schema}.started").touch()
    time.sleep(1)
    return Outcome(schema, "done")


def finish_then_die(schema: str, options: dict[str, Any]) -> Outcome:
    """Complete the schema (a file says so), then die before reporting it."""
    Path(options["dir"], schema).touch()
    os._exit(3)


def completed(schemas: list[str], options: dict[str, Any]) -> set[str]:
    return {schema for schema in schemas if Path(options["dir"], schema).exists()}


def sleep(schema: str, options: dict[str, Any]) -> Outcome:
    """Say which process runs the schema, then take far longer than any test waits."""
    # Whole or not at all (a rename), for a reader that polls for it.
    written = Path(options["dir"], f"{schema}.pid.new")
    written.write_text(str(os.getpid()))
    written.rename(written.with_suffix(""))
    time.sleep(60)
    return Outcome(schema, "done")


def boom(schema: str, options: dict[str, Any]) -> Outcome:
    raise RuntimeError(f"no outcome for {schema}")


def quick_or_sleep(schema: str, options: dict[str, Any]) -> Outcome:
    """Finish the first schema at once; sleep on the others (see ``sleep``)."""
    if schema == "t00":
        return Outcome(schema, "done")
    return sleep(schema, options)


def interrupt_twice(schema: str, options: dict[str, Any]) -> Outcome:
    """Press Ctrl-C twice in this process."""
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
    return Outcome(schema, "done")
