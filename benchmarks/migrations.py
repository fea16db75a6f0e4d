"""Time, memory and connections of migrate_schemata at 10 to 1,000 schemas; commands vs domains.

Usage: python benchmarks/migrations.py

Every command runs in a process of its own, as ``python -m django COMMAND`` would, with the
settings module ``benchmarks.migrations_settings`` (``--parallel`` spawns workers that import
it by name) and ``SCHEMATA_BENCH_SCHEMAS`` domains. That process runs the command in-process,
then reads its own peak RSS (the main process) and ``RUSAGE_CHILDREN`` (the largest of the
worker processes, which the command has joined by the time it returns).

With DATABASE_URL unset, the script re-runs itself under tests/pgserver.py, which starts a
throwaway PostgreSQL server for the duration of the run (as root, installing PostgreSQL with
apt-get when it is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The checkout is measured, not some installed copy; it also makes `benchmarks` importable.
sys.path.insert(0, str(ROOT))

from benchmarks.report import cpu_model, markdown_table  # noqa: E402

SETTINGS = "benchmarks.migrations_settings"
# pg_stat_activity is sampled this often while a command runs. A short command's connection
# may live for a few milliseconds only: such commands are counted in extra, untimed runs
# sampled every 2 ms (that sampling costs the server CPU).
POLL_S = 0.05
FAST_POLL_S = 0.002
# Fresh migrations of a size are repeated (up to --fresh-reps) while that size has taken less
# than this: small sizes get a median of several runs, 1,000 schemas one run.
FRESH_BUDGET_S = 90.0
CATEGORIES = 3  # rows that migrapp's data migration 0011 creates in each schema
DOMAIN_COMMANDS = [
    ("check", ["check"]),
    ("makemigrations --check --dry-run", ["makemigrations", "--check", "--dry-run"]),
    ("migrate_schemata --schema t0", ["migrate_schemata", "--schema", "t0"]),
]
TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass
class Run:
    """One command's process and what the machine did meanwhile."""

    seconds: float
    main_kib: int  # peak RSS of the command's process
    workers_kib: int  # peak RSS of its largest worker process
    python_cpu: float  # CPU seconds of the command's process and all its workers
    server_cpu: float | None  # CPU seconds of PostgreSQL (None: server not on this machine)
    busy_cores: float  # average busy cores of the whole machine
    connections: int  # peak client connections to the database, as sampled
    output: str


# --- the child: one management command, then its resource usage --------------------------


def command_main(result: str, argv: list[str]) -> None:
    """Run ``argv`` as ``python -m django`` would, then write this process's resource usage
    and that of its reaped children (the ``--parallel`` workers) to the file ``result``."""
    from django.core.management import execute_from_command_line

    status = 0
    try:
        execute_from_command_line(["manage.py", *argv])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    # ru_maxrss is in KiB on Linux. For RUSAGE_CHILDREN it is the largest single reaped
    # child, which can only be a worker here: ProcessPoolExecutor joins them before the
    # command returns (CPU times, in contrast, are summed over all of them).
    main = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    usage = {
        "main_kib": main.ru_maxrss,
        "workers_kib": workers.ru_maxrss,
        "cpu": main.ru_utime + main.ru_stime + workers.ru_utime + workers.ru_stime,
    }
    Path(result).write_text(json.dumps(usage))
    sys.exit(status)


# --- the parent: the server, databases, commands, checks ----------------------------------


def server() -> dict[str, Any]:
    import environ

    config: dict[str, Any] = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    return config


def connect(database: str | None = None) -> Any:
    import psycopg
    from psycopg.conninfo import make_conninfo

    config = server()
    params = {
        "dbname": database or config["NAME"],
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
    }
    conninfo = make_conninfo(**{k: v for k, v in params.items() if v})
    return psycopg.connect(conninfo, autocommit=True)


class Databases:
    """The benchmark's databases, created fresh and all dropped at the very end.

    Dropping a database of 1,000 migrated schemas deletes some 100,000 files. On ext4, files
    created in the next minutes then cost the server about twice the CPU (the kernel's inode
    allocator skips recently deleted inodes: ``recently_deleted``, ``find_inode_bit``), which
    would fall on whichever run came next.
    """

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self, name: str) -> str:
        with connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # an aborted run's
            conn.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        with connect() as conn:
            for name in self.names:
                # FORCE: a backend of the last command may still be on its way out.
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: state, ppid, ... (man 5 proc)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def find_postmaster() -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine and we can see it."""
    with connect() as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    try:
        postmaster = int(proc_stat(backend)[1])
        with open(f"/proc/{postmaster}/comm") as f:
            # Another PID namespace (a container, another host) would name another process.
            return postmaster if f.read().strip() in ("postgres", "postmaster") else None
    except (OSError, ValueError, IndexError):
        return None


def server_ticks(postmaster: int | None) -> int | None:
    """CPU ticks used so far by the server: its live processes, plus exited backends (which
    the postmaster has reaped, so they are in its children's times)."""
    if postmaster is None:
        return None
    try:
        fields = proc_stat(postmaster)
    except OSError:
        return None
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = proc_stat(int(entry.name))
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == postmaster:
                ticks += int(fields[11]) + int(fields[12])
    return ticks


def machine_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks so far ((0, 0) without /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # minus idle and iowait


def client_backends(conn: Any, database: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        [database],
    ).fetchone()
    return int(row[0])


@contextmanager
def peak_connections(database: str, interval: float) -> Iterator[list[int]]:
    """Sample the client connections to ``database``; yield [peak], filled in on exit."""
    peak = [0]
    stop = threading.Event()
    with connect() as conn:
        # Start from zero: the previous command's backends may take a moment to exit.
        deadline = time.monotonic() + 5
        while client_backends(conn, database) and time.monotonic() < deadline:
            time.sleep(POLL_S)

        def poll() -> None:
            while not stop.wait(interval):
                peak[0] = max(peak[0], client_backends(conn, database))

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield peak
        finally:
            stop.set()
            thread.join()


class Runner:
    """Runs management commands in fresh processes against the benchmark databases."""

    def __init__(self) -> None:
        self.postmaster = find_postmaster()

    def __call__(self, argv: list[str], n: int, database: str, poll: float = POLL_S) -> Run:
        """Run the management command ``argv`` in a new process with ``n`` domains."""
        path = filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(path),
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "SCHEMATA_BENCH_SCHEMAS": str(n),
            "SCHEMATA_BENCH_DATABASE": database,
        }
        with tempfile.TemporaryDirectory() as tmp:
            result, log = Path(tmp, "usage.json"), Path(tmp, "output.txt")
            command = [sys.executable, __file__, "--command", str(result), *argv]
            with log.open("w") as out, peak_connections(database, poll) as peak:
                server0, (busy0, total0) = server_ticks(self.postmaster), machine_ticks()
                start = time.perf_counter()
                status = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT)
                seconds = time.perf_counter() - start
                server1, (busy1, total1) = server_ticks(self.postmaster), machine_ticks()
            output = log.read_text()
            # makemigrations --check exits 1 when models have changes: a bug here too.
            if status.returncode:
                tail = "\n".join(output.splitlines()[-20:])
                sys.exit(f"{' '.join(argv)} (N={n}) exited {status.returncode}:\n{tail}")
            usage = json.loads(result.read_text())
        server_cpu = None
        if server0 is not None and server1 is not None:
            server_cpu = (server1 - server0) * TICK_S
        busy_cores = float("nan")
        if total1 > total0:
            busy_cores = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
        return Run(
            seconds=seconds,
            main_kib=usage["main_kib"],
            workers_kib=usage["workers_kib"],
            python_cpu=usage["cpu"],
            server_cpu=server_cpu,
            busy_cores=busy_cores,
            connections=peak[0],
            output=output,
        )


def expect_summary(run: Run, summary: str, what: str) -> None:
    last = run.output.rstrip().splitlines()[-1]
    if last != summary:
        sys.exit(f"{what}: expected {summary!r} as the last line, got {last!r}")


def expect_created(run: Run, n: int, what: str) -> None:
    """A fresh run says it created the ``n`` schemas (one line at the default verbosity;
    ``verify`` then checks that each holds every migration)."""
    line = f"{n} schema{'s' if n > 1 else ''} created."
    if line not in run.output.splitlines():
        sys.exit(f"{what}: expected {line!r} in its output, got:\n{run.output[-2000:]}")


def verify(database: str, n: int) -> None:
    """Check that every schema holds what public holds: migrations, seeded rows, content
    types, permissions; and that public holds its own seeded rows only (the data migration
    wrote into each schema)."""
    # Migration rows without migrate_schemata's marker (a row that says the run finished),
    # which plain `migrate` does not write in public: checked on its own.
    counted = (
        "django_migrations WHERE NOT (app = 'schemata' AND name LIKE 'migrated:%%')",
        "migrapp_category",
        "django_content_type",
        "auth_permission",
    )

    def select(schema: str) -> str:
        counts = ", ".join(f"(SELECT count(*) FROM {schema}.{table})" for table in counted)
        return f"SELECT '{schema}', {counts}"

    def marked(schema: str) -> str:
        return (
            f"SELECT '{schema}' WHERE NOT EXISTS (SELECT FROM {schema}.django_migrations "
            f"WHERE app = 'schemata' AND name LIKE 'migrated:%%')"
        )

    schemas = [f"t{i}" for i in range(n)]
    rows: list[tuple[Any, ...]] = []
    with connect(database) as conn:
        public = tuple(conn.execute(select("public")).fetchone()[1:])
        for start in range(0, n, 500):
            batch = schemas[start : start + 500]
            rows += conn.execute(" UNION ALL ".join(select(s) for s in batch)).fetchall()
            unmarked = conn.execute(" UNION ALL ".join(marked(s) for s in batch)).fetchall()
            if unmarked:
                sys.exit(f"{len(unmarked)} schemas lack the finished marker: {unmarked[:5]}")
    if public[1] != CATEGORIES:
        sys.exit(f"public holds {public[1]} categories, expected {CATEGORIES}")
    wrong = [row for row in rows if tuple(row[1:]) != public]
    if len(rows) != n or wrong:
        sys.exit(f"{len(wrong)} schemas differ from public {public}: {wrong[:5]}")


@dataclass
class SizeResult:
    n: int
    public: Run
    sequential: list[Run]
    parallel: list[Run]
    noop: list[Run]
    noop_probe: Run  # an untimed no-op run, for its connections


def measure_size(
    run: Runner, databases: Databases, n: int, fresh_reps: int, noop_reps: int
) -> SizeResult:
    started = time.monotonic()
    sequential: list[Run] = []
    parallel: list[Run] = []
    noop: list[Run] = []
    publics: list[Run] = []

    database = ""

    def fresh(argv: list[str], label: str) -> Run:
        nonlocal database
        database = databases.create(f"schemata_bench_migrations_{n}_{len(publics)}")
        publics.append(run(["migrate", "--noinput"], n, database))
        say(f"N={n:,}: {label}...")
        result = run(argv, n, database)
        expect_summary(result, f"Summary: {n} applied.", label)
        expect_created(result, n, label)
        verify(database, n)
        say(
            f"N={n:,}: {label} took {result.seconds:.1f} s "
            f"({result.python_cpu:.1f} s Python CPU, {cpu(result.server_cpu)} s PostgreSQL "
            f"CPU, {result.busy_cores:.2f} cores busy)"
        )
        return result

    while len(sequential) < fresh_reps and (
        not sequential or time.monotonic() - started < FRESH_BUDGET_S
    ):
        sequential.append(fresh(["migrate_schemata"], "sequential migrate_schemata"))
        if not noop:
            # On the database the sequential run has just migrated.
            noop = [run(["migrate_schemata"], n, database) for _ in range(noop_reps)]
            probe = run(["migrate_schemata"], n, database, poll=FAST_POLL_S)
            for r in [*noop, probe]:
                expect_summary(r, f"Summary: {n} up to date.", "no-op migrate_schemata")
        parallel.append(
            fresh(["migrate_schemata", "--parallel", "2"], "migrate_schemata --parallel 2")
        )
    return SizeResult(n, publics[0], sequential, parallel, noop, probe)


Cell = tuple[str, int]  # (command label, number of domains)


def measure_domains(
    run: Runner, databases: Databases, sizes: list[int], reps: int
) -> tuple[dict[Cell, list[Run]], dict[Cell, Run]]:
    """Each command with each number of domains, on one database whose t0 is migrated.

    Returns the timed runs and, per cell, one more run sampled closely for its connections.
    """
    database = databases.create("schemata_bench_domains")
    timed: dict[Cell, list[Run]] = {}
    probes: dict[Cell, Run] = {}
    run(["migrate", "--noinput"], 1, database)
    run(["migrate_schemata"], 1, database)
    for rep in range(reps + 1):
        say(f"commands vs domains: round {rep + 1}/{reps + 1}...")
        for label, argv in DOMAIN_COMMANDS:
            for n in sizes:
                r = run(argv, n, database, poll=POLL_S if rep < reps else FAST_POLL_S)
                if argv[0] == "migrate_schemata":
                    expect_summary(r, "Summary: 1 up to date.", label)
                if rep < reps:
                    timed.setdefault((label, n), []).append(r)
                else:
                    probes[label, n] = r
    return timed, probes


# --- output --------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}"


def median_run(runs: list[Run]) -> Run:
    """The run of median wall time (the lower one of an even count)."""
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(r) for r in runs)


def migrate_tables(results: list[SizeResult]) -> list[list[list[str]]]:
    times = [
        [
            "schemas",
            "runs",
            "public migrate",
            "sequential",
            "per schema",
            "--parallel 2",
            "per schema",
            "speed-up",
            "no-op",
            "no-op per schema",
        ]
    ]
    memory = [
        [
            "schemas",
            "main RSS, sequential",
            "main RSS, --parallel 2",
            "worker RSS, --parallel 2",
            "main RSS, no-op",
            "connections: sequential / --parallel 2 / no-op",
        ]
    ]
    cpu_table = [
        [
            "schemas",
            "sequential: Python + PostgreSQL CPU per schema",
            "busy cores",
            "--parallel 2: Python + PostgreSQL CPU per schema",
            "busy cores",
        ]
    ]
    for r in results:
        seq = median(r.sequential, lambda x: x.seconds)
        par = median(r.parallel, lambda x: x.seconds)
        noop = median(r.noop, lambda x: x.seconds)
        times.append(
            [
                f"{r.n:,}",
                f"{len(r.sequential)}",
                f"{r.public.seconds:.2f} s",
                f"{seq:,.1f} s",
                f"{seq / r.n * 1000:,.0f} ms",
                f"{par:,.1f} s",
                f"{par / r.n * 1000:,.0f} ms",
                f"{seq / par:.2f}x",
                f"{noop:.2f} s",
                f"{noop / r.n * 1000:,.2f} ms",
            ]
        )
        memory.append(
            [
                f"{r.n:,}",
                mib(max(x.main_kib for x in r.sequential)),
                mib(max(x.main_kib for x in r.parallel)),
                mib(max(x.workers_kib for x in r.parallel)),
                mib(max(x.main_kib for x in r.noop)),
                f"{max(x.connections for x in r.sequential)} / "
                f"{max(x.connections for x in r.parallel)} / {r.noop_probe.connections}",
            ]
        )
        row = [f"{r.n:,}"]
        for runs in (r.sequential, r.parallel):
            m = median_run(runs)
            server = "-" if m.server_cpu is None else f"{m.server_cpu / r.n * 1000:.0f} ms"
            row += [f"{m.python_cpu / r.n * 1000:.0f} + {server}", f"{m.busy_cores:.2f}"]
        cpu_table.append(row)
    return [times, memory, cpu_table]


def domains_table(
    timed: dict[Cell, list[Run]], probes: dict[Cell, Run], sizes: list[int]
) -> list[list[str]]:
    counts = " / ".join(f"{n:,}" for n in sizes)
    table = [["command", *(f"{n:,} domains" for n in sizes), f"connections at {counts}"]]
    for label, _ in DOMAIN_COMMANDS:
        cells = [label]
        cells += [f"{median(timed[label, n], lambda x: x.seconds):.2f} s" for n in sizes]
        cells.append(" / ".join(str(probes[label, n].connections) for n in sizes))
        table.append(cells)
    return table


def targets(results: list[SizeResult]) -> list[str]:
    lines = [
        "Reference: django-tenants' migrate_schemas takes 0.158 s per tenant sequentially and "
        "0.066 s with its multiprocessing executor (300 tenants), 20-33 ms per tenant when "
        "nothing needs applying.",
        "Targets: no-op over 1,000 schemas under 2 s; --parallel 2 at least 1.7x faster than "
        "sequential and under 66 ms per schema; worker memory flat from 100 to 1,000 schemas.",
    ]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for r in results:
        seq = median(r.sequential, lambda x: x.seconds)
        par = median(r.parallel, lambda x: x.seconds)
        noop = median(r.noop, lambda x: x.seconds)
        line = (
            f"- {r.n:,} schemas: --parallel 2 {seq / par:.2f}x ({verdict(seq / par >= 1.7)}), "
            f"{par / r.n * 1000:.0f} ms per schema ({verdict(par / r.n < 0.066)})"
        )
        if r.n >= 1000:
            line += f"; no-op {noop:.2f} s ({verdict(noop < 2)})"
        lines.append(line)
    workers = {r.n: max(x.workers_kib for x in r.parallel) for r in results}
    if 100 in workers and 1000 in workers:
        growth = (workers[1000] - workers[100]) / workers[100]
        lines.append(
            f"- worker RSS, 100 -> 1,000 schemas: {mib(workers[100])} -> {mib(workers[1000])} "
            f"({growth:+.0%}; {verdict(abs(growth) <= 0.05)} at +-5%)"
        )
    return lines


def parent(args: argparse.Namespace) -> None:
    import django

    with connect() as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    run = Runner()
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {version}\n"
        f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.machine()}\n"
        f"per schema: contenttypes, auth and migrapp, 34 migrations; every command in a fresh "
        f"process; every fresh run on a new database, whose public was migrated first\n",
        flush=True,
    )
    started = time.monotonic()
    databases = Databases()
    try:
        results = [
            measure_size(run, databases, n, args.fresh_reps, args.noop_reps) for n in args.sizes
        ]
        timed, probes = measure_domains(run, databases, args.domains, args.reps)
    finally:
        say("dropping the databases...")
        databases.drop_all()

    times, memory, cpu_table = migrate_tables(results)
    print(
        f"Fresh migrate_schemata (median of `runs` runs) and the no-op re-run (median of "
        f"{args.noop_reps}), wall time of the whole process:\n"
    )
    print("\n".join(markdown_table(times)), end="\n\n")
    print("\n".join(targets(results)), end="\n\n")
    print(
        f"Peak RSS (worker: the largest worker process) and peak client connections to the "
        f"database (sampled every {POLL_S * 1000:.0f} ms; no-op: {FAST_POLL_S * 1000:.0f} ms):\n"
    )
    print("\n".join(markdown_table(memory)), end="\n\n")
    print(
        "CPU time per schema of the median run: the command's processes (Python) and the "
        "server's (PostgreSQL); busy cores: the whole machine's average during the run.\n"
    )
    print("\n".join(markdown_table(cpu_table)), end="\n\n")
    print(
        f"Commands vs number of domains: wall time of a fresh process, median of {args.reps}; "
        f"peak client connections of one more run, sampled every "
        f"{FAST_POLL_S * 1000:.0f} ms.\n"
    )
    print("\n".join(markdown_table(domains_table(timed, probes, args.domains))), end="\n\n")
    print(f"Whole run: {time.monotonic() - started:,.0f} s")


def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--command":
        command_main(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[10, 100, 1_000],
        help="numbers of schemas to migrate, comma-separated (default: 10,100,1000)",
    )
    parser.add_argument(
        "--domains",
        type=sizes,
        default=[10, 1_000, 10_000],
        help="numbers of domains for the commands table (default: 10,1000,10000)",
    )
    parser.add_argument(
        "--fresh-reps",
        type=int,
        default=3,
        help=f"fresh runs per size, at most; fewer once a size took {FRESH_BUDGET_S:.0f} s",
    )
    parser.add_argument("--noop-reps", type=int, default=3, help="no-op runs per size")
    parser.add_argument("--reps", type=int, default=3, help="runs per command and domains")
    args = parser.parse_args()
    if min(args.fresh_reps, args.noop_reps, args.reps) < 1:
        parser.error("every --*reps must be at least 1")

    if not os.environ.get("DATABASE_URL"):
        launcher = [sys.executable, str(ROOT / "tests" / "pgserver.py"), "--install", "--"]
        os.execv(sys.executable, [*launcher, sys.executable, __file__, *sys.argv[1:]])
    parent(args)


if __name__ == "__main__":
    main()
