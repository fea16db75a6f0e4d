"""Creating and listing schemas in the database."""

from __future__ import annotations

from typing import Any

from django.db import connections

from schemata.databases import DEFAULT_BASE, RESERVED_SCHEMAS, application_name


def existing_schemas(using: str = DEFAULT_BASE) -> set[str]:
    """Return the names of the user schemas that exist in ``using``'s database."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace "
            "WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> ALL(%s)",
            [sorted(RESERVED_SCHEMAS)],
        )
        return {row[0] for row in cursor.fetchall()}


def extension_schemas(using: str = DEFAULT_BASE) -> set[str]:
    """Return the schemas that an extension created (and drops with itself): no tenant's."""
    with connections[using].cursor() as cursor:
        # What an extension's script creates depends on the extension (deptype 'e'), which
        # a schema an extension was merely installed into does not.
        cursor.execute(
            "SELECT n.nspname FROM pg_depend d JOIN pg_namespace n ON n.oid = d.objid "
            "WHERE d.classid = 'pg_namespace'::regclass "
            "AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'"
        )
        return {row[0] for row in cursor.fetchall()}


def create_schema(name: str, using: str = DEFAULT_BASE) -> bool:
    """Create the schema ``name`` unless it exists; return whether it was created."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
        if cursor.fetchone():
            return False
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(name)}")
    return True


def tenant_tables() -> dict[str, str]:
    """Map each table of a tenant app (not in ``SCHEMATA_SHARED_APPS``) to its app label."""
    from schemata.guard import tenant_models

    return {model._meta.db_table: model._meta.app_label for model in tenant_models()}


def public_leftovers(using: str = DEFAULT_BASE) -> dict[str, str]:
    """Tenant-app tables found in ``public``: a schema lacking its own would read these."""
    tables = tenant_tables()
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm') "
            "AND relname = ANY(%s) ORDER BY relname",
            [list(tables)],
        )
        return {row[0]: tables[row[0]] for row in cursor.fetchall()}


def misplaced_extensions(using: str = DEFAULT_BASE) -> dict[str, str]:
    """Map each extension installed in a tenant schema to that schema."""
    from schemata.conf import conf

    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT e.extname, n.nspname FROM pg_extension e "
            "JOIN pg_namespace n ON n.oid = e.extnamespace "
            "WHERE n.nspname = ANY(%s) ORDER BY e.extname",
            [list(conf.databases.schemas)],
        )
        return dict(cursor.fetchall())


def server_connections(using: str = DEFAULT_BASE) -> int:
    """How many connections the server takes from clients other than superusers."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int "
            "- current_setting('superuser_reserved_connections')::int"
        )
        return int(cursor.fetchone()[0])


def end_sessions(cursor: Any, schema: str) -> int:
    """End the sessions on ``schema`` (told by their ``application_name``) in the cursor's
    database, in any process, but for the cursor's own; return how many. Only the role's own
    sessions may be ended."""
    cursor.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND usename = current_user "
        "AND application_name = %s AND pid <> pg_backend_pid()",
        [application_name(cursor.db.settings_dict["OPTIONS"], schema)],
    )
    return int(cursor.fetchone()[0])
