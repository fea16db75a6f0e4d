"""The guard schema: a tenant table missing from its schema fails instead of reaching ``public``.

With shared apps, a schema connection searches ``<schema>, public``. PostgreSQL resolves each
table name at every statement and skips path entries that do not exist, so if the schema is
dropped (or lacks a table) while ``public`` holds a table of that name (left there before the
app became a tenant app), the connection would read and write ``public``'s rows as its own.
Checking the schema once per connection cannot see a drop that comes later, and checking it
per statement would cost a round trip each time.

So the path is ``<schema>, schemata_guard, public``. The guard schema holds, for every tenant
table, a view of the same name and columns that raises an error when read and a trigger that
raises when written. A name the schema resolves never reaches it; a name that falls past the
schema stops there, loudly. ``migrate`` on the base database rebuilds it after every run, so it
follows the models (see ``apps.py``); connections refuse to open without it.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from django.apps import apps
from django.db import connections, models, transaction

from schemata.citus import convert_after_migrate, local_schemas
from schemata.conf import conf
from schemata.databases import GUARD_SCHEMA

_FUNCTIONS = f"""
CREATE FUNCTION {GUARD_SCHEMA}.missing(relation text) RETURNS SETOF record
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'schemata: the table "%" is not in the schema "%" (dropped, or not '
        'migrated); it is never looked up in public instead', relation,
        split_part(current_setting('search_path'), ',', 1)
        USING ERRCODE = 'invalid_schema_name',
        HINT = 'Run migrate_schemata, or check that the tenant''s schema exists.';
END $$;
CREATE FUNCTION {GUARD_SCHEMA}.refuse_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM * FROM {GUARD_SCHEMA}.missing(TG_TABLE_NAME) AS t(x int);
    RETURN NULL;
END $$;
"""


def tenant_models() -> list[type[models.Model]]:
    """Every model with a table in each schema: managed, of an app not in the shared apps."""
    shared = conf.SHARED_APPS
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy and model._meta.app_label not in shared
    ]


def build_guard(using: str) -> None:
    """Create, or rebuild to match the models, the guard schema in ``using``'s database.

    Without shared apps, drop it. A no-op when it already matches.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    statements = [f"DROP SCHEMA IF EXISTS {GUARD_SCHEMA} CASCADE"]
    if conf.SHARED_APPS:  # without shared apps, public is not on schema paths
        statements += [f"CREATE SCHEMA {GUARD_SCHEMA}", _FUNCTIONS]
        seen: set[str] = set()
        for model in tenant_models():
            table = model._meta.db_table
            if table in seen:
                continue
            seen.add(table)
            view = f"{GUARD_SCHEMA}.{quote(table)}"
            literal = "'" + table.replace("'", "''") + "'"
            # Typed columns, so that any query on the table parses and reaches missing().
            columns = ", ".join(
                f"{quote(field.column)} {db_type}"
                for field in model._meta.local_concrete_fields
                if field.column and (db_type := field.db_type(connection)) is not None
            )
            statements += [
                f"CREATE VIEW {view} AS SELECT * FROM {GUARD_SCHEMA}.missing({literal}) "
                f"AS t({columns})",
                f"CREATE TRIGGER refuse_write INSTEAD OF INSERT OR UPDATE OR DELETE ON {view} "
                f"FOR EACH ROW EXECUTE FUNCTION {GUARD_SCHEMA}.refuse_write()",
            ]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
            "WHERE nspname = %s), EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            [GUARD_SCHEMA],
        )
        comment, citus = cursor.fetchone()
        # The definition's digest, kept as the schema's comment, makes an unchanged guard
        # free. On Citus it differs, so that a guard made a distributed schema is rebuilt.
        definition = "\n".join(["citus", *statements] if citus else statements)
        digest = hashlib.sha256(definition.encode()).hexdigest()
        if comment == (digest if conf.SHARED_APPS else None):
            return
        # With schema-based sharding, CREATE SCHEMA would make the guard a distributed schema:
        # placed on a worker, for views that only the coordinator ever reads.
        with local_schemas(cursor) if citus else contextlib.nullcontext():
            for statement in statements:
                cursor.execute(statement)
        if conf.SHARED_APPS:
            cursor.execute(f"COMMENT ON SCHEMA {GUARD_SCHEMA} IS %s", [digest])


def rebuild_after_migrate(sender: Any, using: str, **kwargs: Any) -> None:
    """``post_migrate`` receiver: rebuild the guard after ``migrate`` on a base database (and
    on Citus, make the shared apps' tables reference tables, for tenant tables' foreign keys)."""
    if using not in conf.databases.schemas:
        build_guard(using)
        convert_after_migrate(using)
