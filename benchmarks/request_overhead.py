"""Per-request cost of django-schemata, against plain Django and against naive eager aliases.

Usage: python benchmarks/request_overhead.py

Each configuration runs in its own process (Django is configured once per process) against
a fresh database, and serves a one-query view through Django's real WSGI handler. The test
client is not used: it disconnects ``close_old_connections`` from the request signals and so
hides the per-alias work that Django does on every request.

With DATABASE_URL unset, the script re-runs itself under tests/pgserver.py, which starts a
throwaway PostgreSQL server for the duration of the run (as root, installing PostgreSQL with
apt-get when it is missing).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The checkout is measured, not some installed copy; it also makes `benchmarks` importable.
sys.path.insert(0, str(ROOT))

from benchmarks.report import cpu_model, markdown_table  # noqa: E402

SCHEMA = "t0"
HOST = f"{SCHEMA}.example.com"
ROWS = 10
# Rough seconds per repetition and for the warm-up: slow configurations get fewer requests,
# so that 10,000 naive aliases (~40 ms a request) stay affordable.
REP_BUDGET_S = 1.5
WARMUP_BUDGET_S = 4.0

LABELS = {
    "plain": "plain Django",
    "schemata": "django-schemata",
    "runtime": "django-schemata, run-time tenants on",
    "naive": "naive eager aliases",
}
#: The tenant created while the "runtime" configuration serves, for its first request.
NEW_HOST = "new.example.com"


def base_settings(name: str | None = None) -> dict[str, Any]:
    import environ

    base: dict[str, Any] = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    if name is not None:
        base["NAME"] = name
    # Persistent connections: connection setup would otherwise drown the overhead.
    base["CONN_MAX_AGE"] = None
    return base


def domains(n: int) -> dict[str, dict[str, Any]]:
    return {f"t{i}.example.com": {"schema_name": f"t{i}"} for i in range(n)}


def django_settings(kind: str, n: int, base: dict[str, Any]) -> dict[str, Any]:
    common: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": "benchmark",
        "ALLOWED_HOSTS": ["*"],
        "ROOT_URLCONF": "benchmarks.benchapp.urls",
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
    }
    if kind == "plain":
        return {
            **common,
            "INSTALLED_APPS": ["benchmarks.benchapp"],
            "MIDDLEWARE": [],
            "DATABASES": {"default": base},
        }
    if kind in ("schemata", "runtime"):
        from schemata import expand_databases

        return {
            **common,
            "INSTALLED_APPS": ["schemata", "benchmarks.benchapp"],
            "MIDDLEWARE": ["schemata.middleware.SchemataMiddleware"],
            "DATABASE_ROUTERS": ["schemata.routers.SchemataRouter"],
            "SCHEMATA_DOMAINS": domains(n),
            "DATABASES": expand_databases({"default": base}, domains(n)),
            # The timed host is a settings tenant: it must cost what it costs without them.
            "SCHEMATA_RUNTIME_TENANTS": kind == "runtime",
        }
    if kind == "naive":
        databases = {"default": base}
        existing = str(base.get("OPTIONS", {}).get("options", "")).strip()
        for entry in domains(n).values():
            name = entry["schema_name"]
            options = f"{existing} -c search_path={name}".strip()
            databases[name] = {**base, "OPTIONS": {**base.get("OPTIONS", {}), "options": options}}
        return {
            **common,
            "INSTALLED_APPS": ["benchmarks.benchapp"],
            "MIDDLEWARE": ["benchmarks.benchapp.naive.NaiveSchemaMiddleware"],
            "DATABASE_ROUTERS": ["benchmarks.benchapp.naive.NaiveSchemaRouter"],
            "BENCH_DOMAINS": domains(n),
            "DATABASES": databases,
        }
    raise ValueError(kind)


def create_table(kind: str) -> None:
    from django.db import connections

    from benchmarks.benchapp.models import Item

    alias = "default"
    # Only that schema gets the table: a request routed anywhere else fails, it is not timed.
    if kind != "plain":
        with connections["default"].cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {SCHEMA}")
        alias = SCHEMA
    with connections[alias].schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.using(alias).bulk_create(Item(name=f"item {i}") for i in range(ROWS))
    if kind == "runtime":
        from django.core.management import call_command
        from django.db.migrations.recorder import MigrationRecorder

        call_command("migrate", "schemata", verbosity=0)  # the run-time tenants' tables
        MigrationRecorder(connections[SCHEMA]).ensure_schema()  # a template for clones
    # Requests open their own connections, as they would in a fresh worker.
    connections.close_all()


def first_request_of_a_new_tenant() -> dict[str, float]:
    """Create a tenant (a clone of the timed one) as another process would, then time the
    first request for its host: a revision read, a reload of the tenants, a first query."""
    import schemata
    from schemata.registry import registry

    # This process's copy as it was before: the creation is someone else's.
    registry.sync()
    before = registry._snapshot
    start = time.perf_counter()
    schemata.create_tenant(NEW_HOST, "new", template=SCHEMA)
    created = time.perf_counter() - start
    registry._snapshot, registry._checked = before, time.monotonic() - 1
    checks, loads = registry.stats.checks, registry.stats.loads
    run = request_runner(NEW_HOST)
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    second = timed(run, 1)
    assert (registry.stats.checks - checks, registry.stats.loads - loads) == (1, 1)
    return {"create_ms": created * 1e3, "first_us": first * 1e6, "second_us": second * 1e6}


def request_runner(host: str = HOST) -> Callable[[], None]:
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        statuses.append(status)
        return io.BytesIO().write

    def run() -> None:
        statuses.clear()
        response = handler({**environ, "wsgi.input": io.BytesIO()}, start_response)
        try:
            body = b"".join(response)
        finally:
            # As a WSGI server does: this sends request_finished.
            response.close()
        if statuses != ["200 OK"] or body != b"5":
            raise RuntimeError(f"unexpected response: {statuses} {body[:200]!r}")

    return run


def timed(run: Callable[[], None], count: int) -> float:
    """Return the seconds that ``count`` requests take."""
    start = time.perf_counter()
    for _ in range(count):
        run()
    return time.perf_counter() - start


def child_main(kind: str, n: int, database: str, requests: int, warmup: int) -> None:
    """Set up, warm up, then time one repetition per line read from stdin, until EOF."""
    import django
    from django.conf import settings

    settings.configure(**django_settings(kind, n, base_settings(database)))
    django.setup()
    create_table(kind)
    run = request_runner()

    # Warm-up: connections, URL resolver and caches; it also sizes the repetitions.
    done, elapsed = 0, 0.0
    while done < warmup and (done < 20 or elapsed < WARMUP_BUDGET_S):
        elapsed += timed(run, 10)
        done += 10
    per_request = timed(run, 10) / 10
    count = max(50, min(requests, int(REP_BUDGET_S / per_request)))
    new_tenant = first_request_of_a_new_tenant() if kind == "runtime" else {}
    print(json.dumps({"requests": count, **new_tenant}), flush=True)

    for _ in sys.stdin:
        # The other configurations ran meanwhile: bring caches back before timing.
        timed(run, 10)
        gc.collect()
        print(json.dumps({"us": timed(run, count) / count * 1e6}), flush=True)


class Child:
    """One configuration's process, which times a repetition when asked to."""

    def __init__(self, kind: str, n: int, args: argparse.Namespace) -> None:
        self.kind, self.n = kind, n
        self.label = f"{LABELS[kind]} N={n}"
        self.database = f"schemata_bench_{kind}_{n}"
        self.times: list[float] = []
        recreate_database(self.database, create=True)
        command = [sys.executable, __file__, "--child", kind, str(n), self.database]
        command += [f"--requests={args.requests}", f"--warmup={args.warmup}"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            self.started = self._read()
            self.requests: int = self.started["requests"]
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            sys.exit(f"{self.label} failed with status {self.process.wait()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def repetition(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        self.times.append(self._read()["us"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        recreate_database(self.database, create=False)


def server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0])


def recreate_database(name: str, create: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # FORCE: a backend of the finished child may still be on its way out.
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            cursor.execute(f'CREATE DATABASE "{name}"')


def parent(args: argparse.Namespace) -> None:
    import django
    from django.conf import settings

    settings.configure(DATABASES={"default": base_settings()})
    django.setup()
    configs = [("plain", 0)]
    configs += [(kind, n) for kind in ("schemata", "runtime", "naive") for n in args.sizes]

    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {server_version()}\n"
        f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.machine()}\n"
        f"per configuration: warm-up of up to {args.warmup} requests, then {args.reps} "
        f"repetitions of up to {args.requests:,} requests (fewer when slow), taking turns "
        f"with the other configurations; median and range of the repetitions\n",
        flush=True,
    )

    # All configurations stay up and take turns, one repetition each, in a rotating order:
    # drifts in the machine's speed then hit all of them alike.
    children: list[Child] = []
    try:
        for kind, n in configs:
            print(f"setting up {LABELS[kind]} N={n}...", file=sys.stderr, flush=True)
            children.append(Child(kind, n, args))
        for rep in range(args.reps):
            print(f"repetition {rep + 1}/{args.reps}...", file=sys.stderr, flush=True)
            for i in range(len(children)):
                children[(rep + i) % len(children)].repetition()
    finally:
        for child in children:
            child.close()

    plain = statistics.median(children[0].times)
    table = [["configuration", "N", "requests", "us/request", "min-max", "overhead", "ratio"]]
    for child in children:
        median = statistics.median(child.times)
        ratio = median / plain
        table.append(
            [
                LABELS[child.kind],
                "-" if child.kind == "plain" else f"{child.n:,}",
                f"{args.reps} x {child.requests:,}",
                f"{median:,.1f}",
                f"{min(child.times):,.1f}-{max(child.times):,.1f}",
                "-" if child.kind == "plain" else f"{median - plain:+,.1f} us",
                f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x",
            ]
        )
    print("\n".join(markdown_table(table)))
    print("\nA tenant created while serving (create_tenant, a clone), then its first request")
    print("in a process that had not seen it (revision read, reload, first connection):\n")
    table = [["N", "create_tenant", "first request", "second request"]]
    for child in children:
        if child.kind == "runtime":
            started = child.started
            table.append(
                [
                    f"{child.n:,}",
                    f"{started['create_ms']:,.0f} ms",
                    f"{started['first_us']:,.0f} us",
                    f"{started['second_us']:,.0f} us",
                ]
            )
    print("\n".join(markdown_table(table)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 1_000, 10_000],
        help="numbers of schemas, comma-separated (default: 10,1000,10000)",
    )
    parser.add_argument("--requests", type=int, default=2_000, help="per repetition, at most")
    parser.add_argument("--reps", type=int, default=10, help="repetitions per configuration")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests, at most")
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "N", "DATABASE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.child:
        kind, n, database = args.child
        child_main(kind, int(n), database, args.requests, args.warmup)
        return
    if not os.environ.get("DATABASE_URL"):
        launcher = [sys.executable, str(ROOT / "tests" / "pgserver.py"), "--install", "--"]
        os.execv(sys.executable, [*launcher, sys.executable, __file__, *sys.argv[1:]])
    parent(args)


if __name__ == "__main__":
    main()
