"""Running on a Citus cluster with schema-based sharding (Citus 12+).

With ``citus.enable_schema_based_sharding = on``, every ``CREATE SCHEMA`` makes a distributed
schema whose tables live together on one worker, and a statement whose tables are all in one
such schema runs on that worker. A tenant schema is exactly that, so requests, commands and
migrations run unchanged. Three things differ, and this module handles them:

- A foreign key from a tenant table to a shared table (in ``public``) must point to a
  *reference table*, copied to every node: ``make_reference_tables()`` converts the tables of
  ``SCHEMATA_SHARED_APPS``, and ``migrate`` on the base database calls it (``guard.py``).
- The guard schema and the package's own tables stay on the coordinator (``local_schemas()``).
- ``move_to_node()`` moves a tenant to another node while it is being served.

Citus is never a dependency: nothing here runs unless the ``citus`` extension is installed in
the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.db import connections, transaction

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, schema_name_problem
from schemata.exceptions import SchemataError

#: Apps whose tables stay local to the coordinator: the run-time tenants' registry is read
#: through the base database only, and no tenant table refers to it.
LOCAL_APPS = frozenset({"schemata"})


class CitusError(SchemataError):
    """An operation that needs Citus, on a database without it (or with an older one)."""


class Placement(NamedTuple):
    """Where a tenant schema's tables are: the node's host and port."""

    host: str
    port: int


def citus_version(using: str = DEFAULT_BASE) -> str | None:
    """The version of the ``citus`` extension installed in ``using``'s database, or ``None``."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
        row = cursor.fetchone()
    return row[0] if row else None


def _require_citus(using: str) -> None:
    version = citus_version(using)
    if version is None:
        raise CitusError(
            f"The database of {using!r} has no citus extension: run CREATE EXTENSION citus "
            f"there (and add the workers) first."
        )
    if int(version.split(".")[0]) < 12:  # pragma: no cover  (the tests' cluster runs 12+)
        raise CitusError(
            f"Citus {version} has no schema-based sharding: django-schemata needs Citus 12 or "
            f"later."
        )


@contextmanager
def local_schemas(cursor: Any) -> Iterator[None]:
    """Within the cursor's transaction, create schemas as plain (coordinator) schemas.

    For the package's own schemas, such as the guard: a distributed schema is one more
    colocation group that Citus would place, move and copy DDL to, for views that only the
    coordinator ever reads.
    """
    cursor.execute(
        "SELECT current_setting('citus.enable_schema_based_sharding'), "
        "set_config('citus.enable_schema_based_sharding', 'off', true)"
    )
    previous = cursor.fetchone()[0]
    yield
    cursor.execute("SELECT set_config('citus.enable_schema_based_sharding', %s, true)", [previous])


def shared_tables() -> list[str]:
    """The tables of ``SCHEMATA_SHARED_APPS`` (in ``public``) that tenant tables may refer to."""
    from django.apps import apps

    shared = conf.SHARED_APPS - LOCAL_APPS
    return sorted(
        {
            model._meta.db_table
            for model in apps.get_models(include_auto_created=True)
            if model._meta.managed and not model._meta.proxy and model._meta.app_label in shared
        }
    )


def make_reference_tables(using: str = DEFAULT_BASE) -> list[str]:
    """Make every table of ``SCHEMATA_SHARED_APPS`` in ``public`` a Citus reference table.

    Tenant tables in distributed schemas can then have foreign keys to them and join them on
    their worker. Tables that are reference tables already, and tables not (yet) created,
    are skipped; the others are converted referenced tables first. Returns the tables
    converted. Raises ``CitusError`` without Citus.
    """
    _require_citus(using)
    tables = shared_tables()
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, ARRAY(SELECT DISTINCT r.relname FROM pg_constraint k "
            "JOIN pg_class r ON r.oid = k.confrelid WHERE k.conrelid = c.oid "
            "AND k.contype = 'f' AND k.confrelid <> c.oid) "
            "FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)",
            [tables],
        )
        pending = {name: set(refs) for name, refs in cursor.fetchall()}
        converted: list[str] = []
        # Citus refuses a foreign key from a reference table to a local one: convert the
        # tables a table refers to before it.
        while pending:
            ready = sorted(name for name, refs in pending.items() if not refs & pending.keys())
            if not ready:
                raise CitusError(
                    f"Foreign keys between {sorted(pending)} form a cycle: convert them with "
                    f"create_reference_table() after dropping one of the keys."
                )
            for name in ready:
                cursor.execute(
                    "SELECT create_reference_table(format('public.%%I', %s::text)::regclass)",
                    [name],
                )
                converted.append(name)
                del pending[name]
    return converted


def convert_after_migrate(using: str) -> list[str]:
    """After ``migrate`` on a base database: ``make_reference_tables()`` if it has Citus."""
    if not conf.SHARED_APPS or citus_version(using) is None:
        return []
    return make_reference_tables(using)


def placements(using: str = DEFAULT_BASE) -> dict[str, Placement]:
    """Map each distributed schema that has tables to the node that holds them."""
    _require_citus(using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT ON (s.schema_name) s.schema_name::text, h.nodename, h.nodeport "
            "FROM citus_schemas s JOIN citus_shards h ON h.colocation_id = s.colocation_id "
            "ORDER BY s.schema_name"
        )
        return {name: Placement(host, port) for name, host, port in cursor.fetchall()}


def move_to_node(
    schema: str,
    host: str,
    port: int,
    *,
    transfer_mode: str = "auto",
    using: str = DEFAULT_BASE,
) -> None:
    """Move the tenant ``schema``'s tables to the node ``host:port`` (``citus_schema_move``).

    With the default ``transfer_mode="auto"``, Citus copies the tables by logical replication
    while the tenant is served, and blocks its writes only for the final catch-up; the nodes
    need ``wal_level = logical`` and every table a primary key (Django's have one). Refused
    while a node has ``synchronous_commit = off``: writes made during a move were lost with it
    in our tests.
    Connections on the schema's search path need nothing: the coordinator routes each
    statement to wherever the schema is at that time. Raises ``CitusError`` for a schema that
    is not distributed or an unknown node.
    """
    _require_citus(using)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM citus_schemas WHERE schema_name::text = %s), "
            "EXISTS (SELECT 1 FROM pg_dist_node WHERE nodename = %s AND nodeport = %s)",
            [schema, host, port],
        )
        distributed, known = cursor.fetchone()
        if not distributed:
            raise CitusError(
                f"{schema!r} is not a distributed schema: create it with "
                f"citus.enable_schema_based_sharding on (manage_schemata does, when it is "
                f"on for the database), or distribute it with citus_schema_distribute()."
            )
        if not known:
            raise CitusError(
                f"There is no Citus node {host}:{port}: see citus_get_active_worker_nodes()."
            )
        # A commit acknowledged before its WAL is flushed may be left out of the copy: with
        # synchronous_commit off, writes made during moves went missing in our tests.
        cursor.execute(
            "SELECT n.nodename, n.nodeport FROM run_command_on_all_nodes("
            "'SHOW synchronous_commit') r JOIN pg_dist_node n USING (nodeid) "
            "WHERE r.result = 'off' ORDER BY n.nodeid"
        )
        unsafe = [f"{name}:{number}" for name, number in cursor.fetchall()]
        if unsafe:
            raise CitusError(
                f"synchronous_commit is off on {', '.join(unsafe)}: writes made while the "
                f"schema moves could be lost. Turn it on there for the move (ALTER SYSTEM SET "
                f"synchronous_commit = on; SELECT pg_reload_conf();)."
            )
        cursor.execute(
            "SELECT citus_schema_move(%s::regnamespace, %s, %s, %s::citus.shard_transfer_mode)",
            [schema, host, port, transfer_mode],
        )


def clone_schema(template: str, name: str, using: str = DEFAULT_BASE) -> None:
    """``schemata.clone_schema()`` for Citus: copy ``template`` as a plain schema, then (with
    schema-based sharding on) make it a distributed schema (``citus_schema_distribute``), in
    one transaction.

    Cloning straight into a distributed schema fails (Citus refuses ``ALTER TABLE ... ADD
    GENERATED`` on distributed tables), and so does sending the copy as one batch: a foreign
    key to a reference table makes Citus send the statement's text to a node, which refuses
    several commands in one. Raises ``SchemataError`` as ``clone_schema()`` does.
    """
    from schemata import cloning
    from schemata.moving import search_path

    _require_citus(using)
    problem = schema_name_problem(name)
    if problem:
        raise SchemataError(problem)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        statements, path = cloning.clone_statements(cursor, template, name)
        with search_path(cursor, path), local_schemas(cursor):
            for statement in statements:
                cursor.execute(statement)
        cursor.execute("SHOW citus.enable_schema_based_sharding")
        if cursor.fetchone()[0] != "on":
            return  # a plain schema, as CREATE SCHEMA would make here
        cursor.execute("SELECT citus_schema_distribute(%s::regnamespace)", [name])
        # Distributing recreates the sequences at their start: set them where the copy's are.
        for statement in statements:
            if statement.startswith("SELECT setval("):
                cursor.execute(statement)
