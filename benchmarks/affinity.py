"""Which connection a pool moves to another schema: its slot's, the oldest or the newest.

Usage: python benchmarks/affinity.py [--schemas 1000] [--tables 5] [--requests 20000]

A PostgreSQL server process keeps the catalog entries of every table it has read, for as long
as it lives. A pool that moves its least recently used connection to whichever schema comes
next spreads every schema over every server process: each holds the catalog entries of all
the schemas' tables, and keeps reading new ones for a long time. With slots
(``schemata/pool.py``), each server process serves the schemas that hash to its slot. Moving
the most recently used connection instead keeps one server process busy (warm in the CPU's
caches) and the others idle, at the price of that one reading every schema's catalog.

One ``SchemaPool`` of 10 connections serves requests for schemas chosen uniformly at random,
one after the other (a sync worker): each request moves a connection (the move carried in
front of the query, as the pool's connections do it) and runs a query that joins two of the
schema's tables. The same sequence runs with each choice, twice each, taking turns. Printed per
quarter of the run: the time per request, and the memory of the pool's server processes
(``pg_backend_memory_contexts``): all 10 together, and the largest.

With DATABASE_URL unset, the script re-runs itself under tests/pgserver.py, which starts a
throwaway PostgreSQL server for the duration of the run.
"""

from __future__ import annotations

import argparse
import os
import random
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


#: How each variant picks, among idle connections oldest first, the one to move.
CHOICES = {
    "slots": None,  # the pool's own
    "oldest": lambda connections, key: next(iter(connections)),  # the pool before slots
    "newest": lambda connections, key: next(reversed(connections)),
}


def run(
    name: str, sequence: list[int], tables: int, choice: str, quarters: int = 4
) -> list[tuple[float, float, float]]:
    """Serve ``sequence`` with a new pool; per quarter: us per request, MiB of all its server
    processes, MiB of the largest."""
    import psycopg

    from benchmarks.migrations import connect
    from schemata.paths import Move, path_cursor, path_key
    from schemata.pool import SchemaPool

    pool = SchemaPool("bench", max_size=POOL_SIZE, timeout=5, move=True)
    if CHOICES[choice] is not None:  # replaced in this process only
        pool._in_slot = CHOICES[choice]  # type: ignore[method-assign]
    rng = random.Random(1)
    cursor_class = path_cursor(psycopg.ClientCursor)

    def open_new() -> Any:
        connection = connect(name)
        connection.cursor_factory = cursor_class  # carries a pending move, as the backend's
        return connection

    def verify(resolved: list[str]) -> None:
        pass  # every schema exists; the tests check paths

    moves = {
        i: Move(path_key(name, f"t{i}"), f"t{i}", f"schemata:t{i}", [f"t{i}"], verify)
        for i in set(sequence)
    }
    results = []
    step = len(sequence) // quarters
    for quarter in range(quarters):
        start = time.perf_counter()
        for i in sequence[quarter * step : (quarter + 1) * step]:
            move = moves[i]
            conn = pool.acquire(move, open_new, reclaim=lambda: None)
            a, b = rng.sample(range(tables), 2)
            conn.execute(
                f"SELECT x.id, y.price FROM item{a} x JOIN item{b} y ON y.owner = x.owner "
                f"WHERE x.id < %s",
                [4],
            ).fetchall()
            pool.release(conn, move.key)
        per_request = (time.perf_counter() - start) / step * 1e6
        idle = [entry.connection for entry in pool._idle.values()]
        memory = [conn.execute(MEMORY_SQL).fetchone()[0] / 2**20 for conn in idle]
        results.append((per_request, sum(memory), max(memory)))
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
        runs: dict[str, list[list[tuple[float, float, float]]]] = {c: [] for c in CHOICES}
        for turn in range(2):
            for choice in list(CHOICES)[:: -1 if turn else 1]:
                print(f"run {turn + 1}: {choice}...", file=sys.stderr, flush=True)
                runs[choice].append(run(name, sequence, args.tables, choice))
        step = args.requests // 4
        for title, index in (
            ("us per request", 0),
            ("MiB, the 10 server processes together", 1),
            ("MiB, the largest server process", 2),
        ):
            table = [[f"requests: {title}", *CHOICES]]
            for quarter in range(4):
                cells = [f"{quarter * step + 1:,}-{(quarter + 1) * step:,}"]
                for choice in CHOICES:
                    values = [result[quarter][index] for result in runs[choice]]
                    cells.append(" / ".join(f"{value:,.1f}" for value in values))
                table.append(cells)
            print("\n".join(markdown_table(table)) + "\n")
        print("(two runs each, in the order they ran)")
    finally:
        with connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
