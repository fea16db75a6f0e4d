"""The same project and workload on one PostgreSQL server and on a Citus cluster.

Usage: python benchmarks/scaleout.py [--tenants 50] [--duration 10] [--clients 8]

Both topologies run on this machine: PostgreSQL 15 alone, and Citus (a coordinator and two
workers, schema-based sharding, tests/citus.py). For each, the script times ``migrate``,
``manage_schemata`` and ``migrate_schemata --parallel 2`` for N tenants, then serves the
project of the Citus tests (tests/citus_settings.py: a view that joins a tenant's orders with a
shared table) under gunicorn (2 gthread workers x 4 threads, ``SCHEMATA_POOL`` 4 per worker)
while client threads send keep-alive GETs to tenants chosen at random, and prints the figures
side by side. Citus must be installed: ../shared/citus/build.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout is measured, not some installed copy; it also makes `tests` importable.
sys.path.insert(0, str(ROOT))

from benchmarks.report import cpu_model, markdown_table  # noqa: E402
from tests.citus import running_cluster  # noqa: E402
from tests.pgserver import running  # noqa: E402
from tests.services import UnixHTTPConnection  # noqa: E402

DATABASE = "scaleout"
ORDERS = 5
WORKERS, THREADS = 2, 4


@dataclass
class Topology:
    label: str
    url: str
    describe: Callable[[], str]
    figures: dict[str, float] = field(default_factory=dict)


def environment(url: str, tenants: list[str]) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.citus_settings",
        "DATABASE_URL": url,
        "CITUS_TENANTS": ",".join(tenants),
        "PYTHONPATH": str(ROOT),
    }


def timed(env: dict[str, str], cwd: Path, *args: str) -> float:
    """Seconds ``python -m django ARGS`` takes; exits with its output if it fails."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-3000:]}")
    return time.perf_counter() - started


@contextmanager
def gunicorn(env: dict[str, str], tmp: Path) -> Iterator[str]:
    sock = str(tmp / "gunicorn.sock")
    log = tmp / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "django.core.wsgi:get_wsgi_application()",
                f"--bind=unix:{sock}",
                f"--workers={WORKERS}",
                "--worker-class=gthread",
                f"--threads={THREADS}",
            ],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield sock
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(sock: str, tenants: list[str], clients: int, seconds: float) -> dict[str, float]:
    """Keep-alive GETs from ``clients`` threads for ``seconds``; throughput and latencies."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(seed: int) -> None:
        nonlocal errors
        chooser = random.Random(seed)
        connection = UnixHTTPConnection(sock)
        mine: list[float] = []
        wrong = 0
        while time.monotonic() < stop_at:
            tenant = chooser.choice(tenants)
            started = time.perf_counter()
            connection.request("GET", "/orders/", headers={"Host": f"{tenant}.example.com"})
            response = connection.getresponse()
            body = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200 or json.loads(body)["schema"] != tenant:
                wrong += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += wrong

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "requests/s": len(latencies) / seconds,
        "p50 ms": 1000 * statistics.median(latencies),
        "p99 ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "wrong": float(errors),
    }


def measure(topology: Topology, tenants: list[str], args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="schemata-scaleout."))
    env = environment(topology.url, tenants)
    try:
        figures = topology.figures
        figures["migrate s"] = timed(env, tmp, "migrate", "-v0")
        figures["manage_schemata s"] = timed(env, tmp, "manage_schemata", "-v0")
        figures["migrate_schemata --parallel 2 s"] = timed(
            env, tmp, "migrate_schemata", "--parallel", "2", "-v0"
        )
        seed = (
            "from tests.citus_shared.models import Plan\n"
            "from tests.citus_tenant.models import Order\n"
            "import schemata\n"
            "plan = Plan.objects.create(name='gold')\n"
            f"for name in {tenants!r}:\n"
            "    with schemata.override(name):\n"
            f"        for _ in range({ORDERS}):\n"
            "            Order.objects.create(title=name, plan=plan)\n"
        )
        timed(env, tmp, "shell", "-v0", "-c", seed)
        with gunicorn(env, tmp) as sock:
            serve(sock, tenants, args.clients, 2)  # warm-up: every worker's pool filled
            figures.update(serve(sock, tenants, args.clients, args.duration))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50, help="default: 50")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load; 10")
    parser.add_argument("--clients", type=int, default=8, help="client threads; 8")
    args = parser.parse_args()
    tenants = [f"t{i}" for i in range(1, args.tenants + 1)]
    with ExitStack() as stack:
        # Commits wait for the disk on both, as the Citus nodes need for moves (tests/citus.py).
        plain = stack.enter_context(
            running(max_connections=200, settings={"synchronous_commit": "on"})
        )
        plain.create_database(DATABASE)
        cluster = stack.enter_context(running_cluster())
        citus_url = cluster.create_database(DATABASE)

        def placement() -> str:
            with cluster.coordinator.connect(DATABASE) as connection:  # type: ignore[attr-defined]
                rows = connection.execute(
                    "SELECT h.nodeport, count(DISTINCT s.schema_name) FROM citus_schemas s "
                    "JOIN citus_shards h ON h.colocation_id = s.colocation_id GROUP BY 1"
                ).fetchall()
            return ", ".join(f"worker :{port} holds {n}" for port, n in sorted(rows))

        topologies = [
            Topology("PostgreSQL 15, one server", plain.url(DATABASE), lambda: "one server"),
            Topology("Citus 1+2 nodes", citus_url, placement),
        ]
        load = os.getloadavg()[0]
        for topology in topologies:
            measure(topology, tenants, args)
        with cluster.coordinator.connect(DATABASE) as connection:  # type: ignore[attr-defined]
            version = connection.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
            ).fetchone()[0]
        print(
            f"{args.tenants} tenants ({ORDERS} orders each, joined with a reference table); "
            f"gunicorn {WORKERS} gthread workers x {THREADS} threads; {args.clients} client "
            f"threads, keep-alive, {args.duration:g} s after a 2 s warm-up; all on one machine: "
            f"{cpu_model()}, {os.cpu_count()} cores (load average {load:.1f} at the start), "
            f"Python {platform.python_version()}, Citus {version}, synchronous_commit on"
        )
        for topology in topologies:
            print(f"{topology.label}: {topology.describe()}")
        names = list(topologies[0].figures)
        table = [["", *(t.label for t in topologies)]]
        for name in names:
            table.append(
                [name, *(f"{t.figures[name]:.{0 if name == 'wrong' else 2}f}" for t in topologies)]
            )
        print("\n".join(markdown_table(table)))


if __name__ == "__main__":
    main()
