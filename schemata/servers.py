"""Moving a tenant's schema from one PostgreSQL server to another (``move_schema``).

The copy is PostgreSQL's own: ``pg_dump --schema`` of the source piped into ``pg_restore
--single-transaction`` on the target, so every table, sequence value, index, constraint, view,
function and trigger of the schema travels as the server itself describes it. Writes to the
schema wait while it is copied (its tables are locked in ``SHARE`` mode, which readers and
``pg_dump`` pass); the copy is then checked table by table against the source, and the source
schema is renamed out of every search path in the same transaction, so nothing can be written
to the old copy afterwards: requests that still reach it fail loudly, never silently.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction

from schemata.conf import conf
from schemata.connections import release_idle_connections
from schemata.databases import DEFAULT_BASE, base_problem
from schemata.exceptions import SchemataError, UnknownSchema
from schemata.registry import BUMP_SQL, all_schemas, registry
from schemata.schemas import end_sessions

PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: Suffix of the source's copy once a schema has moved; `manage_schemata --drop` removes it.
MOVED_SUFFIX = "_moved"


@dataclass(frozen=True)
class Moved:
    """What ``move_schema`` did: where from and to, the rows copied, the old copy's name."""

    schema: str
    source: str
    target: str
    rows: int
    old_copy: str
    registered: bool  # a run-time tenant, now registered on the target


def move_schema(name: str, target: str) -> Moved:
    """Copy the schema ``name`` to the server of the ``DATABASES`` alias ``target`` and retire
    the source's copy (renamed ``<name>_moved``, out of every search path).

    A run-time tenant is re-registered on ``target`` in the same step; a tenant of
    ``SCHEMATA_DOMAINS`` needs its entry's ``"database"`` set to ``target`` and deployed, and
    its requests fail until then. Raises ``SchemataError``, having changed nothing, when the
    copy cannot be made or does not match.
    """
    schema = all_schemas().get(name)
    if schema is None:
        raise UnknownSchema(
            f"Unknown schema {name!r}: it is in neither SCHEMATA_DOMAINS nor the run-time tenants."
        )
    source = schema.base
    problem = base_problem(target, conf.databases)
    if problem:
        raise SchemataError(f"Cannot move {name!r} to {target!r}: {problem}")
    if source == target:
        raise SchemataError(f"{name!r} is on {target!r} already.")
    old_copy = f"{name[: 63 - len(MOVED_SUFFIX)]}{MOVED_SUFFIX}"
    pg_dump, pg_restore = _programs()
    release_idle_connections()
    runtime = name not in dict.keys(conf.databases.schemas)
    with transaction.atomic(using=source), connections[source].cursor() as cursor:
        _refuse_clashes(cursor, name, old_copy, target)
        tables = _lock(cursor, name)
        counts = _counts(cursor, name, tables)
        _copy(pg_dump, pg_restore, name, source, target)
        try:
            with connections[target].cursor() as target_cursor:
                copied = _counts(target_cursor, name, tables)
            if copied != counts:
                differ = sorted(t for t in tables if copied.get(t) != counts.get(t))
                raise SchemataError(
                    f"The copy of {name!r} on {target!r} does not match the source "
                    f"({', '.join(differ)}): nothing was changed on {source!r}."
                )
            quoted = connections[source].ops.quote_name
            cursor.execute(f"ALTER SCHEMA {quoted(name)} RENAME TO {quoted(old_copy)}")
            end_sessions(cursor, name)
            if runtime:
                _register(name, target)
        except BaseException:
            _drop(target, name)
            raise
    registry.invalidate()
    return Moved(name, source, target, sum(counts.values()), old_copy, runtime)


def _programs() -> tuple[str, str]:
    found = [shutil.which(program) for program in ("pg_dump", "pg_restore")]
    if None in found:
        raise SchemataError(
            "move_schema needs PostgreSQL's pg_dump and pg_restore on PATH (Debian: "
            "postgresql-client), of the servers' major version or newer."
        )
    return found[0], found[1]  # type: ignore[return-value]


def _refuse_clashes(cursor: Any, name: str, old_copy: str, target: str) -> None:
    cursor.execute(
        "SELECT to_regnamespace(%s) IS NULL, to_regnamespace(%s) IS NOT NULL", [name, old_copy]
    )
    missing, retired = cursor.fetchone()
    if missing:
        raise SchemataError(f"There is no schema {name!r} on its server to move.")
    if retired:
        raise SchemataError(
            f"{old_copy!r}, the copy an earlier move left, is still there: drop it first "
            f"('manage.py manage_schemata --drop {old_copy}')."
        )
    with connections[target].cursor() as target_cursor:
        target_cursor.execute("SELECT to_regnamespace(%s) IS NOT NULL", [name])
        if target_cursor.fetchone()[0]:
            raise SchemataError(
                f"{target!r} has a schema {name!r} already: drop it there first if it is a "
                f"leftover ('manage.py manage_schemata --drop {name} --database {target}')."
            )


def _lock(cursor: Any, name: str) -> list[str]:
    """Lock the schema's tables against writes until the transaction ends; return them."""
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        [name],
    )
    tables = [row[0] for row in cursor.fetchall()]
    if tables:
        quote = cursor.db.ops.quote_name
        listed = ", ".join(f"{quote(name)}.{quote(table)}" for table in tables)
        cursor.execute(f"LOCK TABLE {listed} IN SHARE MODE")
    return tables


def _counts(cursor: Any, name: str, tables: list[str]) -> dict[str, int]:
    if not tables:
        return {}
    quote = cursor.db.ops.quote_name
    cursor.execute(
        " UNION ALL ".join(
            f"SELECT %s, count(*) FROM {quote(name)}.{quote(table)}" for table in tables
        ),
        tables,
    )
    return dict(cursor.fetchall())


def _copy(pg_dump: str, pg_restore: str, name: str, source: str, target: str) -> None:
    """``pg_dump -n name`` on ``source`` into ``pg_restore`` on ``target``, all or nothing."""
    dump = subprocess.Popen(
        [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--schema={name}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_libpq_env(source),
        preexec_fn=_die_with_parent,
    )
    restore = subprocess.run(
        [
            pg_restore,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            _libpq_env(target)["PGDATABASE"],
        ],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        env=_libpq_env(target),
        preexec_fn=_die_with_parent,
    )
    assert dump.stdout is not None and dump.stderr is not None
    dump.stdout.close()
    dump_errors = dump.stderr.read().decode(errors="replace")
    if dump.wait() != 0:
        raise SchemataError(f"pg_dump of {name!r} on {source!r} failed: {dump_errors.strip()}")
    if restore.returncode != 0:
        raise SchemataError(
            f"Restoring {name!r} on {target!r} failed, and was rolled back there: "
            f"{restore.stderr.strip()}"
        )


# Runs in the child between fork and exec, where coverage records nothing; the killed-move
# test proves it (pg_restore ends with the command).
def _die_with_parent() -> None:  # pragma: no cover
    """In the child: be killed when this process dies, however it dies (Linux).

    A ``pg_restore`` left running after ``kill -9`` of the command would commit its copy on
    the target while the source keeps the schema; killed with it, its transaction rolls back
    and a rerun starts from where the first one did.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _libpq_env(alias: str) -> dict[str, str]:
    """The environment that points libpq's programs at ``alias``'s database."""
    settings: dict[str, Any] = dict.__getitem__(conf.databases, alias)
    options = settings.get("OPTIONS", {})
    env = dict(os.environ)
    values = {
        "PGHOST": settings.get("HOST") or options.get("host"),
        "PGPORT": settings.get("PORT") or options.get("port"),
        "PGUSER": settings.get("USER") or options.get("user"),
        "PGPASSWORD": settings.get("PASSWORD") or options.get("password"),
        "PGDATABASE": settings.get("NAME") or options.get("dbname") or "postgres",
        "PGSSLMODE": options.get("sslmode"),
        "PGOPTIONS": None,  # never a schema alias's options
    }
    for key, value in values.items():
        env.pop(key, None)
        if value:
            env[key] = str(value)
    return env


def _register(name: str, target: str) -> None:
    from schemata.models import Tenant

    with transaction.atomic(using=DEFAULT_BASE):
        Tenant.objects.using(DEFAULT_BASE).filter(schema_name=name).update(database=target)
        with connections[DEFAULT_BASE].cursor() as cursor:
            cursor.execute(BUMP_SQL)


def _drop(target: str, name: str) -> None:
    connection = connections[target]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {connection.ops.quote_name(name)} CASCADE")
