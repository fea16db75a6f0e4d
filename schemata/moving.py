"""Moving apps' tables between schemas, with their migration records, in one transaction.

``ALTER TABLE ... SET SCHEMA`` takes a table's rows, indexes, constraints and owned sequences
along without copying anything. What it cannot keep right on its own is checked first: the
migration records of both schemas, and foreign keys that would end up between two tenants.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.db import connections, router, transaction
from django.db.migrations.graph import MigrationGraph
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE
from schemata.exceptions import SchemataError
from schemata.guard import build_guard, tenant_models

PUBLIC = "public"

Key = tuple[str, str]


class MoveRefused(SchemataError):
    """A move that would lose or mislink data; nothing was changed."""


def app_tables(labels: Iterable[str]) -> dict[str, str]:
    """Map each table of the apps ``labels`` (many-to-many tables included) to its app."""
    return {
        model._meta.db_table: label
        for label in labels
        for model in apps.get_app_config(label).get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


def move_apps(
    labels: Sequence[str],
    source: str,
    target: str,
    *,
    adopt: bool = False,
    using: str = DEFAULT_BASE,
) -> list[str]:
    """Move the tables of the apps ``labels`` from ``source`` to ``target`` and return what
    was done, a line per step.

    Creates ``target`` and its ``django_migrations`` when missing. ``target`` records the
    source's migrations of the apps (all of the source's with ``adopt``, which also needs an
    empty ``target``) and the shared apps' that it lacks; ``source`` forgets the apps' records
    where their tables belong. Raises ``MoveRefused``, having changed nothing, when a table
    would be lost, overwritten or left pointing to another tenant's.
    """
    tables = app_tables(labels)
    loader = MigrationLoader(None, ignore_no_migrations=True)
    connection = connections[using]
    qn = connection.ops.quote_name
    src, dst = qn(source), qn(target)
    lines: list[str] = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        held = _relations(cursor, source)
        if held is None:
            raise MoveRefused(f"There is no schema {source!r}; nothing was moved.")
        moving = sorted(table for table, kind in held.items() if kind in "rp" and table in tables)
        if not moving:
            raise MoveRefused(
                f"{source} has no table of {', '.join(map(repr, labels))}: nothing to move."
            )
        _refuse_unapplied(cursor, loader.graph, source, src, labels)
        present = _relations(cursor, target)
        others = set(present or ()) - {"django_migrations", "django_migrations_id_seq"}
        clash = sorted(others if adopt else others & set(moving))
        if clash:
            needs = ": adopt_schema needs a new or empty schema" if adopt else ""
            raise MoveRefused(
                f"{target} already has {', '.join(clash)}{needs}; nothing was moved."
            )
        distributed = _distributed(cursor, [source, target])
        if distributed:
            raise MoveRefused(
                f"{' and '.join(distributed)} {'are' if len(distributed) > 1 else 'is a'} "
                f"distributed schema{'s' if len(distributed) > 1 else ''} of Citus, which "
                f"refuses to move tables into or out of one (ALTER TABLE ... SET SCHEMA); "
                f"nothing was moved."
            )
        if present is None:
            cursor.execute(f"CREATE SCHEMA {dst}")
            lines.append(f"{target}: schema created")
        for table in moving:
            cursor.execute(f"ALTER TABLE {src}.{qn(table)} SET SCHEMA {dst}")
            lines.append(f"{source}.{table} -> {target}.{table}")
        with search_path(cursor, dst):
            MigrationRecorder(connection).ensure_schema()
        lines.append(_record(cursor, loader, (source, target, src, dst), labels, adopt))
        # Records of an app whose tables belong in the source, and are gone, would keep
        # migrate from making them again.
        forget = [label for label in labels if _belongs(source, label)]
        cursor.execute(f"DELETE FROM {src}.django_migrations WHERE app = ANY(%s)", [forget])
        for schema, quoted in ((source, src), (target, dst)):
            _refuse_inconsistent(cursor, loader, schema, quoted, set(labels))
        _refuse_foreign_keys(cursor, source, target, moving)
        build_guard(using)
    return lines


def _relations(cursor: Any, schema: str) -> dict[str, str] | None:
    """Map the tables, views and sequences of ``schema`` to their kind; ``None``: no schema."""
    cursor.execute(
        "SELECT c.relname, c.relkind FROM pg_namespace n LEFT JOIN pg_class c "
        "ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        "WHERE n.nspname = %s",
        [schema],
    )
    rows = cursor.fetchall()
    return {name: kind for name, kind in rows if name} if rows else None


@contextmanager
def search_path(cursor: Any, path: str) -> Iterator[None]:
    """Resolve unqualified names in ``path`` for the block, within the cursor's transaction."""
    cursor.execute(
        "SELECT current_setting('search_path'), set_config('search_path', %s, true)", [path]
    )
    previous = cursor.fetchone()[0]
    yield
    cursor.execute("SELECT set_config('search_path', %s, true)", [previous])


def _applied(cursor: Any, quoted: str) -> set[Key]:
    cursor.execute(f"SELECT app, name FROM {quoted}.django_migrations")
    return set(cursor.fetchall())


def _refuse_unapplied(
    cursor: Any, graph: MigrationGraph, source: str, src: str, labels: Sequence[str]
) -> None:
    """The models say which tables an app has only once all its migrations ran."""
    cursor.execute("SELECT to_regclass(format('%%s.django_migrations', %s::text))", [src])
    applied = _applied(cursor, src) if cursor.fetchone()[0] else set()
    missing = [
        key
        for key, migration in graph.nodes.items()
        if key[0] in labels
        and key not in applied
        and not ((replaces := set(getattr(migration, "replaces", ()))) and replaces <= applied)
    ]
    if missing:
        how = (
            "with SCHEMATA_SHARED_APPS unset, so that migrate reaches the tenant apps there"
            if source == PUBLIC and conf.SHARED_APPS
            else f"(migrate_schemata --schema {source})"
            if source != PUBLIC
            else "(migrate)"
        )
        raise MoveRefused(
            f"{source} has not applied {', '.join(f'{a}.{n}' for a, n in sorted(missing))}, so "
            f"its tables may not be the models' yet: migrate it first {how}; nothing was moved."
        )


def _belongs(schema: str, label: str) -> bool:
    """Whether ``label``'s tables are migrated in ``schema`` (not merely recorded)."""
    return router.allow_migrate(DEFAULT_BASE if schema == PUBLIC else schema, label)


def _record(
    cursor: Any,
    loader: MigrationLoader,
    names: tuple[str, str, str, str],
    labels: Sequence[str],
    adopt: bool,
) -> str:
    """Give the target the source's records of the apps (all of them with ``adopt``)."""
    source, target, src, dst = names
    # Only rows of migrations on disk: a row of the package's own (the mark that migrate
    # finished) says nothing true of a schema that was never migrated as one.
    known = {*loader.graph.nodes, *(k for m in loader.replacements.values() for k in m.replaces)}
    copy = (
        f"INSERT INTO {dst}.django_migrations (app, name, applied) "
        f"SELECT app, name, applied FROM {{}}.django_migrations s "
        f"WHERE (app, name) IN (SELECT * FROM unnest(%s::text[], %s::text[])) AND {{}} "
        f"ORDER BY id"
    )
    pairs = [[app for app, _ in known], [name for _, name in known]]
    if adopt:
        cursor.execute(f"DELETE FROM {dst}.django_migrations")
        cursor.execute(copy.format(src, "true"), pairs)
        return f"{target}.django_migrations: {cursor.rowcount} migrations, as in {source}"
    cursor.execute(f"DELETE FROM {dst}.django_migrations WHERE app = ANY(%s)", [list(labels)])
    cursor.execute(copy.format(src, "app = ANY(%s)"), [*pairs, list(labels)])
    line = f"{target}.django_migrations: {cursor.rowcount} migrations of {', '.join(labels)}"
    if target != PUBLIC and conf.SHARED_APPS:
        # A tenant app's migrations depend on the shared apps': migrate refuses a history that
        # lacks them. They are recorded in every schema, where they change nothing.
        cursor.execute(
            copy.format(
                PUBLIC,
                f"app = ANY(%s) AND NOT EXISTS (SELECT 1 FROM {dst}.django_migrations t "
                f"WHERE t.app = s.app AND t.name = s.name)",
            ),
            [*pairs, sorted(conf.SHARED_APPS)],
        )
        if cursor.rowcount:
            line += f", and {cursor.rowcount} of the shared apps"
    return line


def _refuse_inconsistent(
    cursor: Any, loader: MigrationLoader, schema: str, quoted: str, labels: set[str]
) -> None:
    """Refuse a history ``migrate`` would refuse (InconsistentMigrationHistory) for the apps."""
    applied = _applied(cursor, quoted)
    graph = loader.graph
    for key in sorted(applied):
        if key not in graph.nodes:
            continue
        for parent in graph.node_map[key].parents:
            if parent.key in applied or not labels & {key[0], parent.key[0]}:
                continue
            squash = loader.replacements.get(parent.key)
            if squash and set(squash.replaces) <= applied:
                continue
            other = parent.key[0] if key[0] in labels else key[0]
            raise MoveRefused(
                f"{schema} would record {key[0]}.{key[1]} without its dependency "
                f"{parent.key[0]}.{parent.key[1]}: move the app {other!r} along; nothing was "
                f"moved."
            )


def _refuse_foreign_keys(cursor: Any, source: str, target: str, moving: list[str]) -> None:
    """A foreign key between a moved table and one left behind would join two tenants."""
    cursor.execute(
        "SELECT fn.nspname, f.relname, tn.nspname, t.relname "
        "FROM pg_constraint c "
        "JOIN pg_class f ON f.oid = c.conrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace "
        "JOIN pg_class t ON t.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "WHERE c.contype = 'f' AND (fn.nspname = %(target)s AND f.relname = ANY(%(moving)s) "
        "OR tn.nspname = %(target)s AND t.relname = ANY(%(moving)s)) "
        "ORDER BY fn.nspname, f.relname, c.conname",
        {"target": target, "moving": moving},
    )
    shared = {PUBLIC, *conf.EXTENSION_SCHEMAS} if conf.SHARED_APPS else set()
    tenant = {model._meta.db_table for model in tenant_models()}
    for from_schema, from_table, to_schema, to_table in cursor.fetchall():
        if from_schema == to_schema == target:
            continue
        if from_schema == target and to_schema in shared and to_table not in tenant:
            continue  # a shared table, on every schema's path
        if from_schema == target:
            raise MoveRefused(
                f"{source}.{from_table} has a foreign key to {to_schema}.{to_table}, which "
                f"would stay behind: move its app along; nothing was moved."
            )
        raise MoveRefused(
            f"{from_schema}.{from_table} has a foreign key to {source}.{to_table}, which would "
            f"move to {target}: move its app along; nothing was moved."
        )


def _distributed(cursor: Any, schemas: list[str]) -> list[str]:
    """Those of ``schemas`` that are distributed schemas of Citus (none without Citus)."""
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    if not cursor.fetchone()[0]:
        return []
    cursor.execute(
        "SELECT schema_name::text FROM citus_schemas WHERE schema_name::text = ANY(%s)",
        [schemas],
    )
    found = {row[0] for row in cursor.fetchall()}
    return [schema for schema in schemas if schema in found]
