"""Per-schema jobs for the commands, and finding the schemas that need no migration."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.models.signals import post_migrate

from schemata.conf import conf
from schemata.connections import release_idle_connections
from schemata.databases import DEFAULT_BASE
from schemata.marker import APP, digest, is_marker, write_marker
from schemata.state import override
from schemata.statecache import reusing_states
from schemata.workers import FAILED, Outcome, Status

Key = tuple[str, str]

#: How the base database's schema is named in output and in ``migrate_schema``.
PUBLIC = "public"

#: UNION ALL arms per query when reading every schema's django_migrations.
BATCH = 500


def public_job(base: str) -> str:
    """How the ``public`` schema of the server ``base`` is named in jobs and output:
    ``public`` for ``default``'s, ``public@eu`` for the server of the alias ``eu``."""
    return PUBLIC if base == DEFAULT_BASE else f"{PUBLIC}@{base}"


def public_base(job: str) -> str | None:
    """The base alias of a ``public_job()`` name, or ``None`` for a tenant schema's."""
    if job == PUBLIC:
        return DEFAULT_BASE
    prefix, at, base = job.partition("@")
    return base if at and prefix == PUBLIC else None


def migrate_schema(schema: str, options: dict[str, Any]) -> Outcome:
    """Run ``migrate`` on ``schema``'s alias with the schema active (``RunPython`` included),
    then mark the schema as migrated: ``post_migrate`` has run by the time ``migrate`` returns.

    ``schema`` may also be a server's ``public`` (``public_job()``), migrated on its base alias
    with no schema active.
    """
    plans: list[Any] = []

    base = public_base(schema)
    alias = base or schema

    def capture(sender: Any, using: str, plan: Any = None, **kwargs: Any) -> None:
        if using == alias:
            plans.append(plan)

    read_only = bool(options.get("plan") or options.get("check_unapplied"))

    def mark() -> None:
        if not read_only:
            write_marker(alias, disk_marker())

    post_migrate.connect(capture, weak=False, dispatch_uid=f"schemata.capture.{schema}")
    try:
        with _migrating(schema), reusing_states():
            if base is not None:
                kwargs = {**options, "database": base}
                outcome = call_in_schema(schema, "migrate", [], kwargs, alias=base, then=mark)
            else:
                outcome = call_in_schema(
                    schema, "migrate", [], {**options, "database": schema}, then=mark
                )
    finally:
        post_migrate.disconnect(dispatch_uid=f"schemata.capture.{schema}")
    if outcome.status == FAILED:
        return outcome
    if options.get("plan"):
        return outcome
    return Outcome(schema, Status.APPLIED if any(plans) else Status.UP_TO_DATE, outcome.lines)


def finished_schemas(schemas: list[str], options: dict[str, Any]) -> set[str]:
    """Those of ``schemas`` that a ``migrate_schema`` run with ``options`` left complete."""
    if options.get("plan") or options.get("check_unapplied") or options.get("app_label"):
        return set()  # nothing to tell a finished run by
    return current_schemas(schemas)


def current_schemas(jobs: Iterable[str]) -> set[str]:
    """Those of ``jobs`` (schemas and ``public_job()`` names) that are up to date, read on
    each one's own server."""
    done: set[str] = set()
    by_base: dict[str, list[str]] = {}
    for job in jobs:
        base = public_base(job)
        if base is not None:
            if up_to_date_schemas([PUBLIC], using=base):
                done.add(job)
        else:
            by_base.setdefault(conf.databases.schemas[job].base, []).append(job)
    for base, names in by_base.items():
        done |= up_to_date_schemas(names, using=base)
    return done


@cache
def disk_marker() -> str:
    """The marker of a schema that has every migration on disk (and ran post_migrate)."""
    return digest(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


@contextmanager
def _migrating(schema: str) -> Iterator[None]:
    """Hold a lock on migrating ``schema`` in this database while the block runs.

    Two runs never migrate one schema at once: a rerun started while a worker of a killed run
    still finishes its schema waits for it (the server drops a dead session's locks), then
    finds the schema up to date.
    """
    base = public_base(schema) or conf.databases.schemas[schema].base
    connection = connections[base]
    key = f"schemata.migrate:{schema}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    try:
        yield
    finally:
        # Migrating public closes this very connection, which ends the lock with it.
        if connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def show_migrations(schema: str, options: dict[str, Any]) -> Outcome:
    """Run ``showmigrations [app_label...]`` on ``schema``'s alias."""
    kwargs = {key: value for key, value in options.items() if key != "app_label"}
    return call_in_schema(
        schema, "showmigrations", options["app_label"], {**kwargs, "database": schema}
    )


def call_in_schema(
    schema: str,
    name: str,
    args: list[str],
    kwargs: dict[str, Any],
    alias: str | None = None,
    then: Callable[[], None] = lambda: None,
) -> Outcome:
    """Run a command with ``schema`` active, or on ``alias`` with no schema active; then
    ``then()``, if it succeeded. Its output and how it ended, as an ``Outcome``."""
    out, err = StringIO(), StringIO()
    try:
        with override(None if alias else schema):
            call_command(name, *args, stdout=out, stderr=err, **kwargs)
            then()
    except SystemExit as exc:  # `migrate --check` exits 1 when migrations are unapplied
        if exc.code:
            error = "unapplied migrations" if name == "migrate" else f"exited with {exc.code}"
            return Outcome(schema, FAILED, _lines(out, err), error)
    except Exception as exc:
        return Outcome(schema, FAILED, _lines(out, err), f"{type(exc).__name__}: {exc}")
    finally:
        # A loop of commands would otherwise keep every schema's connection (and connection
        # object) alive.
        connections[alias or schema].close()
        release_idle_connections()
    return Outcome(schema, Status.DONE, _lines(out, err))


def _lines(*streams: StringIO) -> tuple[str, ...]:
    return tuple(line for stream in streams for line in stream.getvalue().splitlines())


def up_to_date_schemas(schemas: list[str], using: str = DEFAULT_BASE) -> set[str]:
    """Return the schemas whose ``django_migrations`` holds every migration on disk and the
    marker that ``migrate`` finished there (``post_migrate`` included) with those migrations.

    Reads every schema's table in a few queries on ``using``, whatever the number of schemas,
    and decides batch by batch, so memory does not grow with it.
    """
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    marker = (APP, disk_marker())
    # Rows are matched against the graph's own keys (and the marker): nothing else is kept.
    keys = {key: key for key in graph.nodes}
    keys[marker] = marker
    needed = [(key, set(graph.nodes[key].replaces)) for key in graph.nodes]
    needed.append((marker, set()))
    current = set()
    for batch in _applied_batches(schemas, using, keys):
        for schema, applied in batch.items():
            # A squashed migration counts as applied when everything it replaces is.
            if all(
                key in applied or (replaces and replaces <= applied) for key, replaces in needed
            ):
                current.add(schema)
    return current


def applied_migrations(schemas: Iterable[str], using: str = DEFAULT_BASE) -> dict[str, set[Key]]:
    """Map each schema that has a ``django_migrations`` table to the migrations it records
    (not counting the marker of ``migrate_schemata``)."""
    applied: dict[str, set[Key]] = {}
    for batch in _applied_batches(list(schemas), using):
        applied.update(
            {name: {key for key in keys if not is_marker(key)} for name, keys in batch.items()}
        )
    return applied


def _applied_batches(
    schemas: list[str], using: str, keys: dict[Key, Key] | None = None
) -> Iterator[dict[str, set[Key]]]:
    """Yield, per batch of schemas, what each one that has ``django_migrations`` records.

    With ``keys``, only those migrations are kept, as the very tuples of ``keys``.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        # to_regclass on a qualified name: the search path of `using` plays no part.
        cursor.execute(
            "SELECT s FROM unnest(%s::text[]) AS s "
            "WHERE to_regclass(format('%%I.django_migrations', s)) IS NOT NULL",
            [schemas],
        )
        present = [row[0] for row in cursor.fetchall()]
        for start in range(0, len(present), BATCH):
            batch = present[start : start + BATCH]
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT %s, app, name FROM {connection.ops.quote_name(schema)}."
                    f"django_migrations"
                    for schema in batch
                ),
                batch,
            )
            applied: dict[str, set[Key]] = {schema: set() for schema in batch}
            for schema, app, name in cursor.fetchall():
                key = (app, name) if keys is None else keys.get((app, name))
                if key is not None:
                    applied[schema].add(key)
            yield applied
