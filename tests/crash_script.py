"""Kill ``migrate_schemata --parallel 2`` with SIGKILL at random points, then check that one
rerun leaves every schema equal to a reference schema.

Usage: DATABASE_URL=... python -m tests.crash_script [--trials 20] [--seed N]

Each trial drops the schemas, starts the command in a process of its own and kills, after a
random delay, either one of its worker processes (``worker``) or the command's own process
(``parent``). Then it checks that:

- every schema the command reported FAILED is not marked finished (it really failed);
- after a parent was killed, its workers exit within ``ORPHAN_S`` seconds;
- after one more ``migrate_schemata`` run, every schema equals the reference: tables,
  columns, indexes and constraints, recorded migrations, content types, permissions, seed rows.

It works in a database of its own on DATABASE_URL's server, dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import environ
import psycopg
from psycopg import sql

SCHEMAS = ("c0", "c1", "c2")
ORPHAN_S = 5.0
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per kind of kill")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}", flush=True)

    url = os.environ["DATABASE_URL"]
    name = f"schemata_crash_{os.getpid()}"
    parts = urllib.parse.urlsplit(url)
    crash_url = urllib.parse.urlunsplit(
        parts._replace(path=f"{parts.path.rsplit('/', 1)[0]}/{name}")
    )
    config = environ.Env.db_url_config(url)
    with _admin(config) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = crash_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.crash_settings"
    try:
        return _trials(args.trials, rng)
    finally:
        from django.db import connections

        connections.close_all()
        with _admin(config) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _admin(config: dict[str, Any]) -> psycopg.Connection[Any]:
    params = {
        key: value
        for key, value in {
            "host": config.get("HOST"),
            "port": config.get("PORT"),
            "user": config.get("USER"),
            "password": config.get("PASSWORD"),
        }.items()
        if value
    }
    try:
        return psycopg.connect(dbname="postgres", autocommit=True, **params)
    except psycopg.OperationalError:
        return psycopg.connect(dbname=config["NAME"], autocommit=True, **params)


def _trials(trials: int, rng: random.Random) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("migrate_schemata", "--schema", "ref", verbosity=0, stdout=StringIO())
    reference = _shape("ref")
    problems: list[str] = []
    duration = _calibrate()
    print(f"a full run takes {duration:.2f} s once its workers have started", flush=True)
    states: Counter[str] = Counter()
    for trial in range(trials):
        for kind in ("worker", "parent"):
            found = _trial(kind, rng, duration, reference, states)
            problems += [f"{kind} trial {trial}: {problem}" for problem in found]
    for problem in problems:
        print(problem, flush=True)
    # How the kills left the schemas, before the rerun: the states the rerun had to repair.
    print("schemas after a kill: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    print(f"{2 * trials} trials, {len(problems)} problems", flush=True)
    return 1 if problems else 0


def _command() -> subprocess.Popen[str]:
    args = [arg for schema in SCHEMAS for arg in ("--schema", schema)]
    return subprocess.Popen(
        [sys.executable, "-m", "django", "migrate_schemata", *args, "--parallel", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _calibrate() -> float:
    """How long a run takes once its workers exist."""
    _drop()
    process = _command()
    _wait_for_workers(process)
    started = time.monotonic()
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    return time.monotonic() - started


def _wait_for_workers(process: subprocess.Popen[str]) -> list[int]:
    deadline = time.monotonic() + 60
    while len(workers := _workers(process.pid)) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "no worker processes after 60 s"
        time.sleep(0.01)
    return workers


def _trial(
    kind: str,
    rng: random.Random,
    duration: float,
    reference: dict[str, Any],
    states: Counter[str],
) -> list[str]:
    from django.core.management import call_command

    problems: list[str] = []
    _drop()
    process = _command()
    workers: list[int] = []
    try:
        workers = _wait_for_workers(process)
        time.sleep(rng.uniform(0, duration))
        if kind == "worker" and workers:
            with contextlib.suppress(ProcessLookupError):  # the run may have just ended
                os.kill(rng.choice(workers), signal.SIGKILL)
        elif kind == "parent":
            process.kill()
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    if kind == "parent":
        deadline = time.monotonic() + ORPHAN_S
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = [pid for pid in workers if _alive(pid)]
        for pid in orphans:
            problems.append(f"worker {pid} still runs {ORPHAN_S} s after its parent died")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    else:
        failed = set(re.findall(r"^\[(\w+)\] FAILED", output, re.M))
        wrongly = sorted(failed & _marked())
        if wrongly:
            problems.append(f"reported FAILED but finished: {wrongly}")
    states.update(_state(schema, reference) for schema in SCHEMAS)
    call_command(
        "migrate_schemata",
        *[arg for schema in SCHEMAS for arg in ("--schema", schema)],
        verbosity=0,
        stdout=StringIO(),
    )
    for schema in SCHEMAS:
        shape = _shape(schema)
        for part, value in reference.items():
            if shape[part] != value:
                problems.append(f"{schema} differs from the reference in its {part}")
    return problems


def _drop() -> None:
    from django.db import connections

    with connections["default"].cursor() as cursor:
        for schema in SCHEMAS:
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _state(schema: str, reference: dict[str, Any]) -> str:
    shape = _shape(schema)
    if shape == reference:
        return "complete"
    if shape["migrations"] == reference["migrations"]:
        return "migrated, post_migrate missing"
    return "partly migrated" if isinstance(shape["migrations"], list) else "not started"


def _marked() -> set[str]:
    from schemata.migrator import up_to_date_schemas

    return up_to_date_schemas(list(SCHEMAS))


def _shape(schema: str) -> dict[str, Any]:
    """What a migrated schema holds, with the schema's name taken out."""
    from django.db import connections

    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = %(s)s",
        "indexes": "SELECT indexname, replace(indexdef, %(s)s || '.', '') FROM pg_indexes "
        "WHERE schemaname = %(s)s",
        "constraints": "SELECT conname, replace(pg_get_constraintdef(oid), %(s)s || '.', '') "
        "FROM pg_constraint WHERE connamespace = %(s)s::regnamespace",
        "migrations": f"SELECT app, name FROM {schema}.django_migrations",
        "content types": f"SELECT app_label, model FROM {schema}.django_content_type",
        "permissions": f"SELECT codename, name FROM {schema}.auth_permission",
        "seed rows": f"SELECT label FROM {schema}.seedapp_seed",
    }
    shape: dict[str, Any] = {}
    with connections["default"].cursor() as cursor:
        for part, query in queries.items():
            try:
                cursor.execute(query, {"s": schema})
                shape[part] = sorted(cursor.fetchall())
            except Exception as exc:  # a table missing: that part differs
                shape[part] = f"{type(exc).__name__}"
                connections["default"].close()
                break
    return shape


def _workers(pid: int) -> list[int]:
    """The worker processes of the command running as ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


if __name__ == "__main__":
    sys.exit(main())
