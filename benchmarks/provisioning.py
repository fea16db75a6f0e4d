"""A new schema: full migration vs a copy of a migrated template (``clone_schema``).

Usage: python benchmarks/provisioning.py [--schemas N]

Uses the app of benchmarks/migrations.py (20 migrations of its own, 34 per schema with
contenttypes and auth), in a database of its own that it drops at the end. With DATABASE_URL
unset, the script re-runs itself under tests/pgserver.py, which starts a throwaway PostgreSQL
server for the duration of the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schemas", type=int, default=20, help="schemas per method")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        launcher = [sys.executable, str(ROOT / "tests" / "pgserver.py"), "--install", "--"]
        script = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        os.execv(sys.executable, [*launcher, *script])

    sys.path.insert(0, str(ROOT))
    from benchmarks.migrations import Databases

    databases = Databases()
    n = args.schemas
    os.environ["SCHEMATA_BENCH_DATABASE"] = databases.create(
        f"schemata_provisioning_{os.getpid()}"
    )
    os.environ["SCHEMATA_BENCH_SCHEMAS"] = str(2 * n + 1)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.migrations_settings"
    try:
        run(n)
    finally:
        from django.db import connections

        connections.close_all()
        databases.drop_all()


def run(n: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from schemata import clone_schema
    from schemata.migrator import applied_migrations, migrate_schema, up_to_date_schemas
    from schemata.schemas import create_schema

    call_command("migrate", verbosity=0)  # public
    migrated = [f"t{i}" for i in range(1, n + 1)]
    cloned = [f"t{i}" for i in range(n + 1, 2 * n + 1)]
    options = {"verbosity": 0, "interactive": False, "skip_checks": True}

    create_schema("t0")
    migrate_schema("t0", options)  # the template, and a warm-up
    full = []
    for name in migrated:
        started = time.perf_counter()
        create_schema(name)
        outcome = migrate_schema(name, options)
        full.append(time.perf_counter() - started)
        assert outcome.status == "applied", outcome
    clones = []
    for name in cloned:
        started = time.perf_counter()
        clone_schema("t0", name)
        clones.append(time.perf_counter() - started)

    schemas = migrated + cloned
    assert up_to_date_schemas(schemas) == set(schemas), "a schema is not up to date"
    recorded = len(applied_migrations(["t0"])["t0"])
    rows = [
        ("full migrate (migrate_schema)", full),
        ("clone_schema from t0", clones),
    ]
    print(
        f"Python {sys.version.split()[0]}, Django {django.get_version()}, "
        f"{os.cpu_count()} cores; {recorded} migrations per schema; {n} schemas per method\n"
    )
    print("| new schema | median | min-max |")
    print("|---|--:|--:|")
    for label, times in rows:
        print(
            f"| {label} | {statistics.median(times) * 1000:.1f} ms "
            f"| {min(times) * 1000:.1f}-{max(times) * 1000:.1f} ms |"
        )
    ratio = statistics.median(full) / statistics.median(clones)
    print(f"\nclone_schema is {ratio:.0f}x faster than running the migrations.")


if __name__ == "__main__":
    main()
