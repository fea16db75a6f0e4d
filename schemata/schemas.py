"""Creating and listing schemas in the database."""

from __future__ import annotations

from django.db import connections

SYSTEM_SCHEMAS = ("public", "information_schema")


def existing_schemas(using: str = "default") -> set[str]:
    """Return the names of the user schemas that exist in ``using``'s database."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace "
            "WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> ALL(%s)",
            [list(SYSTEM_SCHEMAS)],
        )
        return {row[0] for row in cursor.fetchall()}


def create_schema(name: str, using: str = "default") -> bool:
    """Create the schema ``name`` unless it exists; return whether it was created."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
        if cursor.fetchone():
            return False
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {connection.ops.quote_name(name)}")
    return True
