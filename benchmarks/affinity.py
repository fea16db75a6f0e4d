"""Which connection the pool moves to another schema: the one in the schema's slot, or the oldest.

Usage: python benchmarks/affinity.py [--schemas 1000] [--tables 5] [--requests 20000]

A PostgreSQL server process keeps the catalog entries of every table it has read, for as long
as it lives. A pool that moves its least recently used connection to whichever schema comes
next spreads every schema over every server process: each holds the catalog entries of all
the schemas' tables, and keeps reading new ones for a long time. With slots
(``schemata/pool.py``), each server process serves the schemas that hash to its slot.

One ``SchemaPool`` of 10 connections serves requests for schemas chosen uniformly at random,
one after the other (a sync worker): each request moves a connection (one statement) and runs
a query that joins two of the schema's tables. The same sequence runs with slots and with the
oldest idle connection moved (the pool before slots), twice each, taking turns. Printed per
quarter of the run: the time per request, and the memory of the pool's server processes
(``pg_backend_memory_contexts``, the average of the 10).

With DATABASE_URL unset, the script re-runs itself under tests/pgserver.py, which starts a
throwaway PostgreSQL server for the duration of the run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MEMORY_SQL = "SELECT sum(total_bytes) FROM pg_backend_memory_contexts"
POOL_SIZE = 10


def create_database(name: str, schemas: int, tables: int) -> None:
    from benchmarks.migrations import connect

    with connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    with connect(name) as conn:
        for i in range(schemas):
            statements = [f"CREATE SCHEMA t{i}"]
            for j in range(tables):
                statements.append(
                    f"CREATE TABLE t{i}.item{j} (id bigint PRIMARY KEY, owner bigint, "
                    f"price int); CREATE INDEX ON t{i}.item{j} (owner); "
                    f"INSERT INTO t{i}.item{j} SELECT g, g % 3, g FROM generate_series(1, 5) g"
                )
            with conn.transaction():
                conn.execute("; ".join(statements))


def run(
    name: str, sequence: list[int], tables: int, slots: bool, quarters: int = 4
) -> list[tuple[float, float]]:
    """Serve ``sequence`` with a new pool; (us per request, MiB per server process) per
    quarter."""
    from benchmarks.migrations import connect
    from schemata.pool import SchemaPool

    pool = SchemaPool("bench", max_size=POOL_SIZE, timeout=5, move=True)
    if not slots:  # the pool before slots: the oldest idle connection moves
        pool._in_slot = lambda connections, key: next(iter(connections))  # type: ignore[method-assign]
    rng = random.Random(1)

    def open_new() -> Any:
        return connect(name)

    def verify(connection: Any, resolved: list[str]) -> None:
        pass  # every schema exists; the tests check paths

    results = []
    step = len(sequence) // quarters
    for quarter in range(quarters):
        start = time.perf_counter()
        for i in sequence[quarter * step : (quarter + 1) * step]:
            key = f"{name}:t{i}"
            conn = pool.acquire(key, open_new, verify, f"t{i}", f"t{i}", reclaim=lambda: None)
            a, b = rng.sample(range(tables), 2)
            conn.execute(
                f"SELECT x.id, y.price FROM item{a} x JOIN item{b} y ON y.owner = x.owner "
                f"WHERE x.id < %s",
                [4],
            ).fetchall()
            pool.release(conn, key)
        per_request = (time.perf_counter() - start) / step * 1e6
        idle = [entry.connection for entry in pool._idle.values()]
        memory = [conn.execute(MEMORY_SQL).fetchone()[0] for conn in idle]
        results.append((per_request, statistics.mean(memory) / 2**20))
    assert pool.stats.moved > len(sequence) // 2, pool.stats
    pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=int, default=1_000)
    parser.add_argument("--tables", type=int, default=5, help="tables per schema")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        launcher = [sys.executable, str(ROOT / "tests" / "pgserver.py"), "--install", "--"]
        os.execv(sys.executable, [*launcher, sys.executable, __file__, *sys.argv[1:]])

    import platform

    import psycopg

    from benchmarks.migrations import connect
    from benchmarks.report import cpu_model, markdown_table

    name = f"schemata_affinity_{os.getpid()}"
    print(f"creating {args.schemas} schemas of {args.tables} tables...", file=sys.stderr)
    create_database(name, args.schemas, args.tables)
    try:
        with connect(name) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(
            f"Python {platform.python_version()}, psycopg {psycopg.__version__}, PostgreSQL "
            f"{version}; {os.cpu_count()} cores, {cpu_model()}\n{args.schemas:,} schemas of "
            f"{args.tables} tables, a pool of {POOL_SIZE}, {args.requests:,} requests for "
            f"schemas chosen uniformly at random\n",
            flush=True,
        )
        choose = random.Random(0).randrange
        sequence = [choose(args.schemas) for _ in range(args.requests)]
        runs: dict[str, list[list[tuple[float, float]]]] = {"slots": [], "oldest": []}
        for turn in range(2):
            for label in ("oldest", "slots") if turn else ("slots", "oldest"):
                print(f"run {turn + 1}: {label}...", file=sys.stderr, flush=True)
                runs[label].append(run(name, sequence, args.tables, slots=label == "slots"))
        step = args.requests // 4
        table = [["requests", "oldest moved: us/request", "slots: us/request",
                  "oldest moved: MiB/server process", "slots: MiB/server process"]]  # fmt: skip
        for quarter in range(4):
            cells = [f"{quarter * step + 1:,}-{(quarter + 1) * step:,}"]
            for index in (0, 1):
                for label in ("oldest", "slots"):
                    values = [result[quarter][index] for result in runs[label]]
                    cells.append(" / ".join(f"{value:,.1f}" for value in values))
            table.append(cells)
        print("\n".join(markdown_table(table)))
        print("\n(two runs each, in the order they ran)")
    finally:
        with connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
