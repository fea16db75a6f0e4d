"""Throughput and server connections behind gunicorn: plain Django, schemata, django-tenants.

Usage: python benchmarks/connections.py [--sizes 10,300,1000] [--duration 5] [--runs 3]
       [--kinds schemata,tenants] [--max-ages 0,60] [--baseline OTHER_CHECKOUT]

The same shop (benchmarks/shop/) runs under each configuration in gunicorn (2 sync workers,
then 2 gthread workers x 4 threads), and wrk sends it requests whose Host goes uniformly at
random over N tenants (benchmarks/shop/rotate.lua). The view runs one query,
``list(Item.objects.all()[:5])``, on its tenant's table of 5 rows.

The script makes its own virtualenv (benchmarks/.venv: Django 5.2, gunicorn, django-tenants;
django-schemata is this checkout) and re-runs itself in it; it installs wrk with apt-get when
missing (as root), and PostgreSQL too. With DATABASE_URL unset it starts a throwaway
PostgreSQL server (tests/pgserver.py); with it set, that server's role must be allowed to
CREATE DATABASE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "benchmarks" / "shop"
VENV = ROOT / "benchmarks" / ".venv"
# The checkout is measured, not some installed copy; it also makes `benchmarks` importable.
sys.path.insert(0, str(ROOT))

from benchmarks.report import cpu_model, markdown_table  # noqa: E402
from tests.pgserver import free_port  # noqa: E402

ROWS = 5
LABELS = {"plain": "plain Django", "schemata": "django-schemata", "tenants": "django-tenants"}
WORKERS = 2
THREADS = 4


@dataclass
class Config:
    kind: str  # plain, schemata, tenants
    n: int  # tenants (plain: the hosts wrk rotates over; it serves them all alike)
    max_age: int  # CONN_MAX_AGE
    worker_class: str  # sync, gthread
    database_url: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    rates: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    peak: int = 0  # most server connections one worker process held at once
    peak_total: int = 0
    pool: dict[str, int] = field(default_factory=dict)
    root: Path = ROOT  # the checkout served (--baseline: another one)
    pool_size: int = 0  # SCHEMATA_POOL["max_size"]; 0: the default

    @property
    def label(self) -> str:
        baseline = "-baseline" if self.root != ROOT else ""
        pool = f"-pool{self.pool_size}" if self.pool_size else ""
        return f"{self.kind}{baseline}{pool}-{self.n}-{self.max_age}-{self.worker_class}"

    def start(self, log: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": f"benchmarks.shop.settings.{self.kind}",
            "DATABASE_URL": self.database_url,
            "SHOP_TENANTS": str(self.n),
            "SHOP_CONN_MAX_AGE": str(self.max_age),
            "SHOP_LABEL": self.label,
            "SHOP_POOL_MAX_SIZE": str(self.pool_size),
            "PYTHONPATH": str(self.root),
        }
        command = [
            str(VENV / "bin" / "gunicorn"), "benchmarks.shop.wsgi:application",
            f"--bind=127.0.0.1:{self.port}", f"--workers={WORKERS}",
            f"--worker-class={self.worker_class}", "--backlog=2048", "--timeout=60",
        ]  # fmt: skip
        if self.worker_class == "gthread":
            command.append(f"--threads={THREADS}")
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def get(self, host: str, path: str = "/") -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Host": host}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def check(self) -> None:
        """Serve, and answer each host from its own schema (every host once, for N <= 300)."""
        deadline = time.monotonic() + 60
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                sys.exit(f"{self.label}: gunicorn exited ({self.process.returncode})")
            try:
                self.get("t0.example.com")
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"{self.label}: gunicorn does not answer")
                time.sleep(0.1)
        tenants = range(self.n) if self.n <= 300 else random.sample(range(self.n), 300)
        for i in tenants:
            status, body = self.get(f"t{i}.example.com")
            schema = "public" if self.kind == "plain" else f"t{i}"
            expected = ",".join(f"{schema}-{row}" for row in range(1, ROWS + 1))
            if (status, body.decode()) != (200, expected):
                sys.exit(f"{self.label}: t{i}.example.com answered {status} {body[:300]!r}")

    def read_pool_stats(self) -> None:
        """Sum the pool statistics of both workers (asked until each has answered once)."""
        by_pid: dict[int, dict[str, int]] = {}
        for _ in range(100):
            status, body = self.get("t0.example.com", "/_pool/")
            if status != 200:
                return
            stats = json.loads(body)
            by_pid[stats.pop("pid")] = stats
            if len(by_pid) == WORKERS:
                break
        keys = next(iter(by_pid.values()))
        self.pool = {key: sum(stats[key] for stats in by_pid.values()) for key in keys}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0:
        print("installing wrk with apt-get...", file=sys.stderr, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    return wrk


def ensure_venv() -> None:
    """Re-run this script in benchmarks/.venv, made (or completed) first."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not python.exists():
        print(f"creating {VENV}...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    requirements = SHOP / "requirements.txt"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", str(requirements)],
        check=True,
    )  # fmt: skip
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rsplit('/', 1)[0]}/{name}"))


def connect(url: str) -> Any:
    import environ
    import psycopg

    config = environ.Env.db_url_config(url)
    return psycopg.connect(
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
        autocommit=True,
    )


def setup_database(url: str, n: int) -> None:
    """In its own process: the tables of all three configurations, and N tenants' schemas."""
    import django
    from django.db import connection

    os.environ.update(
        {"DJANGO_SETTINGS_MODULE": "benchmarks.shop.settings.tenants", "DATABASE_URL": url}
    )
    django.setup()
    from benchmarks.shop.customers.models import Client, Domain
    from benchmarks.shop.models import Item

    with connection.schema_editor() as editor:
        for model in (Item, Client, Domain):
            editor.create_model(model)
    Item.objects.bulk_create(Item(name=f"public-{row}") for row in range(1, ROWS + 1))
    clients = Client.objects.bulk_create(Client(schema_name=f"t{i}") for i in range(n))
    Domain.objects.bulk_create(
        Domain(domain=f"{client.schema_name}.example.com", tenant=client, is_primary=True)
        for client in clients
    )
    with connection.cursor() as cursor:
        for i in range(n):
            # The same table as public's: Django's own DDL, copied.
            cursor.execute(
                f"CREATE SCHEMA t{i}; "
                f"CREATE TABLE t{i}.shop_item (LIKE public.shop_item INCLUDING ALL); "
                f"INSERT INTO t{i}.shop_item (name) "
                f"SELECT 't{i}-' || g FROM generate_series(1, {ROWS}) AS g"
            )
        cursor.execute("ANALYZE")


def sample_connections(url: str, configs: list[Config], stop: threading.Event) -> None:
    """Until ``stop``: the peak, per worker process, of each configuration's connections."""
    with connect(url) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT split_part(application_name, ':', 1), count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' GROUP BY 1"
            ).fetchall()
            for config in configs:
                counts = [count for name, count in rows if name.startswith(config.label + "-")]
                config.peak = max([config.peak, *counts])
                config.peak_total = max(config.peak_total, sum(counts))
            time.sleep(0.05)


def run_wrk(wrk: str, config: Config, seconds: int, connections: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{config.port}/"
    result = subprocess.run(
        [
            wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout=10s",
            "-s", str(SHOP / "rotate.lua"), url, "--", str(config.n),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(
    wrk: str, configs: list[Config], admin_url: str, args: argparse.Namespace, log: Path
) -> None:
    """Start every configuration's gunicorn, then time them in turns, in a rotating order."""
    try:
        for config in configs:
            config.start(log)
        for config in configs:
            config.check()
            run_wrk(wrk, config, 1, args.connections)  # warm-up
        stop = threading.Event()
        for run in range(args.runs):
            print(f"  run {run + 1}/{args.runs}...", file=sys.stderr, flush=True)
            for i in range(len(configs)):
                config = configs[(run + i) % len(configs)]
                sampler = threading.Thread(
                    target=sample_connections, args=(admin_url, [config], stop)
                )
                sampler.start()
                try:
                    counts = run_wrk(wrk, config, args.duration, args.connections)
                finally:
                    stop.set()
                    sampler.join()
                    stop.clear()
                config.rates.append(counts["requests"] / (counts["duration_us"] / 1e6))
                for key in ("status", "connect", "read", "write", "timeout"):
                    config.errors[key] = config.errors.get(key, 0) + counts[key]
        for config in configs:
            if config.kind == "schemata":
                config.read_pool_stats()
    finally:
        for config in configs:
            config.stop()


def table(configs: list[Config], plain: Config) -> list[str]:
    rows = [
        [
            "configuration", "N", "CONN_MAX_AGE", "req/s (median)", "min-max", "vs plain",
            "conns/worker (max)", "conns (all)", "errors", "pool: kept / moved / opened / waited",
        ]
    ]  # fmt: skip
    for config in configs:
        median = statistics.median(config.rates)
        # Each run against plain Django's run of the same round (minutes apart at most): the
        # machine's speed drifts more than that between the first round and the last.
        ratio = statistics.median(
            rate / base for rate, base in zip(config.rates, plain.rates, strict=True)
        )
        non_2xx = config.errors.get("status", 0)
        sockets = sum(v for k, v in config.errors.items() if k != "status")
        pool = config.pool
        rows.append(
            [
                LABELS[config.kind]
                + (" (baseline)" if config.root != ROOT else "")
                + (f", max_size {config.pool_size}" if config.pool_size else ""),
                "-" if config.kind == "plain" else f"{config.n:,}",
                str(config.max_age),
                f"{median:,.0f}",
                f"{min(config.rates):,.0f}-{max(config.rates):,.0f}",
                f"{ratio:.2f}x",
                str(config.peak),
                str(config.peak_total),
                f"{non_2xx} / {sockets}",
                " / ".join(f"{pool[key]:,}" for key in ("kept", "moved", "opened", "waited"))
                if pool
                else "-",
            ]
        )
    return markdown_table(rows)


def parent(args: argparse.Namespace, url: str) -> None:
    import django

    wrk = ensure_wrk()
    with connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        max_connections = conn.execute("SHOW max_connections").fetchone()[0]
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split()[1]
    print(
        f"Python {platform.python_version()}, Django {django.get_version()}, "
        f"gunicorn {version_of('gunicorn')}, django-tenants {version_of('django-tenants')}, "
        f"PostgreSQL {version} (max_connections {max_connections}), wrk {wrk_version}\n"
        f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.machine()}\n"
        f"wrk -t2 -c{args.connections}, {args.runs} runs of {args.duration} s per "
        f"configuration, taken in turns; gunicorn {WORKERS} workers\n",
        flush=True,
    )
    log = Path(os.environ.get("SHOP_LOG", "/tmp/schemata-bench-connections.log"))
    log.write_bytes(b"")
    databases = {}
    started = time.monotonic()
    try:
        for n in args.sizes:
            name = f"shop_{n}"
            with connect(url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{name}"')
            databases[n] = with_database(url, name)
            print(f"setting up {n:,} tenants...", file=sys.stderr, flush=True)
            subprocess.run(
                [sys.executable, __file__, "--setup", str(n), databases[n]],
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        for worker_class in args.worker_classes:
            configs = [Config("plain", args.sizes[0], 60, worker_class, databases[args.sizes[0]])]
            roots = [ROOT, *([args.baseline] if args.baseline else [])]
            configs += [
                Config(kind, n, max_age, worker_class, databases[n], root=root, pool_size=size)
                for kind in args.kinds
                for root in (roots if kind == "schemata" else [ROOT])
                for size in (args.pool_sizes if kind == "schemata" else [0])
                for n in args.sizes
                for max_age in args.max_ages
            ]
            title = f"gunicorn {worker_class}" + (
                f" {WORKERS} x {THREADS}" if worker_class == "gthread" else f" x {WORKERS}"
            )
            print(f"{title}: {len(configs)} configurations...", file=sys.stderr, flush=True)
            measure(wrk, configs, url, args, log)
            print(f"### {title}\n", flush=True)
            print("\n".join(table(configs, configs[0])) + "\n", flush=True)
    finally:
        with connect(url) as conn:
            for name in databases:
                conn.execute(f'DROP DATABASE IF EXISTS "shop_{name}" WITH (FORCE)')
    print(f"whole run: {time.monotonic() - started:.0f} s; gunicorn log: {log}", flush=True)


def version_of(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 300, 1_000],
        help="numbers of tenants, comma-separated (default: 10,300,1000)",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default: 5)")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (default: 3)")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default: 8)")
    parser.add_argument(
        "--worker-classes",
        type=lambda s: s.split(","),
        default=["sync", "gthread"],
        help="gunicorn worker classes, comma-separated (default: sync,gthread)",
    )
    parser.add_argument(
        "--kinds",
        type=lambda s: [kind for kind in s.split(",") if kind != "plain"],
        default=["schemata", "tenants"],
        help="what runs beside plain Django, comma-separated (default: schemata,tenants)",
    )
    parser.add_argument(
        "--max-ages",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 60],
        help="CONN_MAX_AGE values, comma-separated (default: 0,60)",
    )
    parser.add_argument(
        "--pool-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0],
        help="SCHEMATA_POOL['max_size'] values for django-schemata, comma-separated "
        "(default: the setting's default)",
    )
    parser.add_argument(
        "--baseline",
        type=lambda s: Path(s).resolve(),
        help="another checkout of django-schemata (a git worktree of an older commit, say), "
        "served in turn with this one, in rows of its own",
    )
    parser.add_argument("--setup", nargs=2, metavar=("N", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.setup:
        setup_database(args.setup[1], int(args.setup[0]))
        return
    ensure_venv()
    # A signal ends the run through the finally blocks that stop gunicorn and the server:
    # Python leaves SIGTERM unhandled, and SIGINT too when started as a background job.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupted)
    url = os.environ.get("DATABASE_URL")
    with ExitStack() as stack:
        if not url:
            from tests.pgserver import running

            # Every configuration of a worker class stays up, holding its idle connections.
            server = stack.enter_context(running(max_connections=400, install=True))
            server.create_database("schemata")
            url = server.url("schemata")
        parent(args, url)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:
        sys.exit(f"stopped by {stop or 'SIGINT'}; gunicorn and the server with it")
