"""Create a schema as a copy of a migrated one, rows included, in one transaction.

Copying the catalog of a migrated template is a fixed, small number of statements whatever the
migration history, where running every migration again grows with it. The rows are copied too:
a template holds only what migrations made (data migrations' rows, content types,
permissions), which a clone must hold as well to equal a migrated schema.
"""

from __future__ import annotations

from typing import Any

from django.db import connections, transaction

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, schema_name_problem
from schemata.exceptions import SchemataError
from schemata.moving import search_path


def clone_schema(template: str, name: str, using: str = DEFAULT_BASE) -> None:
    """Create the schema ``name`` as a copy of the migrated schema ``template``, rows included.

    Copies tables with their columns, defaults, identity columns and sequences (at the
    template's values), every row, constraints and foreign keys (to its own tables and to
    shared ones), indexes and views, in one transaction. Functions and triggers are not
    copied. The template must hold only what migrations create: its rows become the clone's.
    Raises ``SchemataError`` if ``template`` is not a migrated schema or ``name`` exists.
    """
    problem = schema_name_problem(name)
    if problem:
        raise SchemataError(problem)
    from schemata.citus import citus_version

    if citus_version(using) is not None:
        # Citus refuses this one-batch copy, and identity columns added to distributed tables.
        from schemata.citus import clone_schema as clone_for_citus

        clone_for_citus(template, name, using)
        return
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        statements, path = clone_statements(cursor, template, name)
        with search_path(cursor, path):
            cursor.execute(";\n".join(statements))


def clone_statements(cursor: Any, template: str, name: str) -> tuple[list[str], str]:
    """The statements that make the schema ``name`` a copy of ``template``, in the order to
    run them, and the search path to run them on. Raises ``SchemataError`` if ``template``
    is not a migrated schema or ``name`` exists."""
    cursor.execute(
        "SELECT to_regnamespace(%s) IS NOT NULL, "
        "to_regclass(format('%%I.django_migrations', %s::text)) IS NOT NULL, "
        "quote_ident(%s), quote_ident(%s)",
        [name, template, template, name],
    )
    exists, migrated, src, dst = cursor.fetchone()
    if exists:
        raise SchemataError(f"The schema {name!r} already exists.")
    if not migrated:  # no django_migrations, or no schema at all
        raise SchemataError(
            f"The template {template!r} is not a migrated schema: migrate it first."
        )
    shared = ["public", *conf.EXTENSION_SCHEMAS] if conf.SHARED_APPS else []
    # References render unqualified when they resolve on the search path: under the
    # template's path, its own tables and the shared ones, which then resolve under the
    # new schema's path to its own tables and the same shared ones.
    with search_path(cursor, ", ".join([src, *shared])):
        tables = [f"CREATE SCHEMA {dst}", *_tables(cursor, template, src, dst)]
        rows = _rows(cursor, template, src, dst)
        # Keys and indexes after the rows, as pg_dump orders them: faster, and
        # non-deferrable foreign keys need no particular order of tables.
        dependents = _dependents(cursor, template, src, dst)
    return [*tables, *rows, *dependents], ", ".join([dst, *shared])


def _tables(cursor: Any, template: str, src: str, dst: str) -> list[str]:
    statements = []
    cursor.execute(
        "SELECT c.oid, quote_ident(c.relname) FROM pg_class c "
        "WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind IN ('r', 'p') "
        "ORDER BY c.oid",
        [template],
    )
    tables = cursor.fetchall()
    for _oid, table in tables:
        statements.append(
            f"CREATE TABLE {dst}.{table} (LIKE {src}.{table} "
            f"INCLUDING ALL EXCLUDING INDEXES EXCLUDING CONSTRAINTS EXCLUDING IDENTITY)"
        )
    # Identity columns (LIKE would make their sequences bigint whatever the column), serial
    # columns and free-standing sequences, each with a new sequence of its own.
    cursor.execute(
        "SELECT quote_ident(s.relname), q.seqstart, q.seqincrement, q.seqmin, q.seqmax, "
        "q.seqcycle, format_type(q.seqtypid, NULL), quote_ident(t.relname), "
        "quote_ident(a.attname), a.attidentity, q.seqcache "
        "FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid "
        "LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') "
        "LEFT JOIN pg_class t ON t.oid = d.refobjid "
        "LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE s.relnamespace = to_regnamespace(%s) AND s.relkind = 'S' ORDER BY s.oid",
        [template],
    )
    for (
        seq,
        start,
        step,
        low,
        high,
        cycle,
        kind,
        table,
        column,
        identity,
        cache,
    ) in cursor.fetchall():
        options = (
            f"INCREMENT {step} MINVALUE {low} MAXVALUE {high} START {start} CACHE {cache} "
            f"{'CYCLE' if cycle else 'NO CYCLE'}"
        )
        if identity:
            statements.append(
                f"ALTER TABLE {dst}.{table} ALTER {column} ADD GENERATED "
                f"{'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY "
                f"(SEQUENCE NAME {dst}.{seq} {options})"
            )
            continue
        statements.append(f"CREATE SEQUENCE {dst}.{seq} AS {kind} {options}")
        if table:
            statements.append(
                f"ALTER TABLE {dst}.{table} ALTER {column} "
                f"SET DEFAULT nextval('{dst}.{seq}'::regclass)"
            )
            statements.append(f"ALTER SEQUENCE {dst}.{seq} OWNED BY {dst}.{table}.{column}")
    return statements


def _dependents(cursor: Any, template: str, src: str, dst: str) -> list[str]:
    statements = []
    # Keys and checks before foreign keys, which need the keys they reference.
    cursor.execute(
        "SELECT quote_ident(t.relname), quote_ident(c.conname), pg_get_constraintdef(c.oid), "
        "c.contype = 'f' "
        "FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
        "WHERE t.relnamespace = to_regnamespace(%s) AND c.contype IN ('p', 'u', 'x', 'c', 'f') "
        "ORDER BY c.contype = 'f', c.oid",
        [template],
    )
    # One ALTER TABLE per table and pass (keys and checks, then foreign keys).
    grouped: dict[tuple[bool, str], list[str]] = {}
    for table, constraint, definition, foreign in cursor.fetchall():
        grouped.setdefault((foreign, table), []).append(
            f"ADD CONSTRAINT {constraint} {definition}"
        )
    for (_foreign, table), clauses in sorted(grouped.items(), key=lambda item: item[0][0]):
        statements.append(f"ALTER TABLE {dst}.{table} {', '.join(clauses)}")
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relnamespace = to_regnamespace(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
        "AND k.contype IN ('p', 'u', 'x')) ORDER BY i.indexrelid",
        [template],
    )
    for (definition,) in cursor.fetchall():
        # pg_get_indexdef always names the table with its schema.
        statements.append(
            definition.replace(f" ON {src}.", f" ON {dst}.", 1).replace(
                f" ON ONLY {src}.", f" ON ONLY {dst}.", 1
            )
        )
    cursor.execute(
        "SELECT quote_ident(relname), relkind, pg_get_viewdef(oid) FROM pg_class "
        "WHERE relnamespace = to_regnamespace(%s) AND relkind IN ('v', 'm') ORDER BY oid",
        [template],
    )
    for view, kind, definition in cursor.fetchall():
        if kind == "v":
            statements.append(f"CREATE VIEW {dst}.{view} AS {definition.rstrip(';')}")
        else:
            statements.append(
                f"CREATE MATERIALIZED VIEW {dst}.{view} AS {definition.rstrip(';')} WITH NO DATA"
            )
    return statements


def _rows(cursor: Any, template: str, src: str, dst: str) -> list[str]:
    """Copy every row, then set each sequence where the template's is."""
    cursor.execute(
        "SELECT quote_ident(c.relname), string_agg(quote_ident(a.attname), ', ' "
        "ORDER BY a.attnum) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = to_regnamespace(%s) AND c.relkind = 'r' AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' GROUP BY c.oid, c.relname ORDER BY c.oid",
        [template],
    )
    statements = [
        f"INSERT INTO {dst}.{table} ({columns}) OVERRIDING SYSTEM VALUE "
        f"SELECT {columns} FROM {src}.{table}"
        for table, columns in cursor.fetchall()
    ]
    cursor.execute(
        "SELECT quote_ident(relname) FROM pg_class "
        "WHERE relnamespace = to_regnamespace(%s) AND relkind = 'S' ORDER BY oid",
        [template],
    )
    statements += [
        f"SELECT setval('{dst}.{seq}'::regclass, last_value, is_called) FROM {src}.{seq}"
        for (seq,) in cursor.fetchall()
    ]
    return statements
