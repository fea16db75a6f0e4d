from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import environ
import pytest
from django.db import connections, transaction
from django.test import override_settings

import schemata
from schemata import SchemataError, clone_schema
from tests.conftest import forget_schema_connections
from tests.test_commands_migrate import recorded, relation, run
from tests.testapp.models import Note

pytestmark = pytest.mark.usefixtures("fresh")


def pg_dump_schema(schema: str) -> str:
    """The schema's DDL as pg_dump prints it, with the schema's name replaced."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    pg_dump = binaries[-1] if binaries else shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed to compare schemas"
    config = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    host = config["HOST"] or config.get("OPTIONS", {}).get("host", "")
    name = connections["default"].settings_dict["NAME"]
    output = subprocess.run(
        [
            pg_dump,
            "--schema-only",
            "--no-owner",
            "-h",
            host,
            "-U",
            config["USER"],
            "-n",
            schema,
            name,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [
        line for line in output.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    return re.sub(rf"\b{schema}\b", "SCHEMA", "\n".join(lines))


def test_a_clone_has_the_same_ddl_as_a_migrated_schema() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)

    clone_schema("fresh1", "fresh2")

    assert pg_dump_schema("fresh2") == pg_dump_schema("fresh1")
    assert "CREATE TABLE SCHEMA.testapp_note" in pg_dump_schema("fresh2")


def test_a_clone_records_the_templates_migrations_and_needs_none() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)

    clone_schema("fresh1", "fresh2")
    lines = run("migrate_schemata", "--schema", "fresh2", interactive=False)

    assert recorded("fresh2") == recorded("fresh1")
    assert lines == ["Summary: 1 up to date."]


def test_a_clone_holds_the_templates_rows_and_continues_its_sequences() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)
    with schemata.override("fresh1"):
        for title in ("a", "b", "c"):
            last = Note.objects.create(title=title).pk

    clone_schema("fresh1", "fresh2")

    with schemata.override("fresh2"):
        assert list(Note.objects.order_by("pk").values_list("title", flat=True)) == ["a", "b", "c"]
        assert Note.objects.create(title="next").pk == last + 1
    connections.close_all()


def rows(schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of ``schema`` but the times migrations were applied at."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s) "
            "AND relkind = 'r' ORDER BY relname",
            [schema],
        )
        found = {}
        for (table,) in cursor.fetchall():
            columns = "app, name" if table == "django_migrations" else "*"
            cursor.execute(f"SELECT {columns} FROM {schema}.{table} ORDER BY 1, 2")
            found[table] = cursor.fetchall()
        return found


def test_a_clone_equals_a_migrated_schema_rows_of_data_migrations_included() -> None:
    run("migrate_schemata", "--schema", "fresh1", "--schema", "fresh2", interactive=False)

    clone_schema("fresh1", "fresh3")

    assert rows("fresh3") == rows("fresh2")
    assert rows("fresh3")["seedapp_seed"] == [(1, "seeded", None)]  # from a data migration


def test_cloning_in_a_transaction_leaves_its_search_path_alone() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)
    connection = connections["default"]

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        before = cursor.fetchone()
        clone_schema("fresh1", "fresh2")
        cursor.execute("SHOW search_path")

        assert cursor.fetchone() == before


def test_cloning_refuses_an_existing_name_an_unmigrated_template_and_bad_names() -> None:
    run("manage_schemata")

    with pytest.raises(SchemataError, match="The schema 'fresh2' already exists."):
        clone_schema("alpha", "fresh2")
    with pytest.raises(SchemataError, match="The template 'fresh3' is not a migrated schema"):
        clone_schema("fresh3", "brand_new")
    with pytest.raises(SchemataError, match="schema name 'Bad' is invalid"):
        clone_schema("alpha", "Bad")
    assert relation("brand_new.django_migrations") is None


@override_settings(SCHEMATA_SHARED_APPS=["contenttypes", "auth", "sessions"])
def test_a_clone_keeps_foreign_keys_to_shared_tables() -> None:
    forget_schema_connections()
    run("migrate_schemata", "--schema", "fresh1", interactive=False)

    clone_schema("fresh1", "fresh2")

    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = 'fresh2.seedapp_seed'::regclass AND contype = 'f'"
        )
        assert cursor.fetchall() == [("auth_user",)]
        cursor.execute("SELECT to_regclass('public.auth_user')::oid = 'auth_user'::regclass::oid")
        assert cursor.fetchone() == (True,)
    forget_schema_connections()


def test_manage_schemata_can_create_missing_schemas_by_cloning() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)

    lines = run("manage_schemata", "--clone-from", "fresh1")

    assert "fresh2: created from fresh1" in lines
    assert "fresh1: exists" in lines
    assert pg_dump_schema("fresh4") == pg_dump_schema("fresh1")


def test_manage_schemata_reports_a_bad_template() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="The template 'nope' is not a migrated schema"):
        run("manage_schemata", "--clone-from", "nope")


def add_serials_and_views(schema: str) -> None:
    """Give a migrated schema serial columns, a sequence of its own and views, with rows."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {schema}.counter (id serial PRIMARY KEY, big bigserial, label text);"
            f"INSERT INTO {schema}.counter (label) VALUES ('one'), ('two');"
            f"CREATE SEQUENCE {schema}.ticket START 100;"
            f"SELECT nextval('{schema}.ticket'), nextval('{schema}.ticket');"
            f"INSERT INTO {schema}.testapp_note (title) VALUES ('template');"
            f"CREATE VIEW {schema}.titles AS SELECT upper(title) AS title FROM "
            f"{schema}.testapp_note;"
            f"CREATE MATERIALIZED VIEW {schema}.labels AS SELECT label FROM {schema}.counter;"
        )


def test_a_clone_continues_serial_columns_and_sequences_on_sequences_of_its_own() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)
    add_serials_and_views("fresh1")

    clone_schema("fresh1", "fresh2")

    assert pg_dump_schema("fresh2") == pg_dump_schema("fresh1")
    with connections["default"].cursor() as cursor:
        cursor.execute("INSERT INTO fresh2.counter (label) VALUES ('three')")
        cursor.execute("SELECT nextval('fresh2.ticket')")
        assert cursor.fetchone() == (102,)
        cursor.execute("INSERT INTO fresh1.counter (label) VALUES ('three') RETURNING id, big")
        assert cursor.fetchone() == (3, 3)  # the clone took nothing from the template's
        cursor.execute("SELECT id, big, label FROM fresh2.counter ORDER BY id")
        assert cursor.fetchall() == [(1, 1, "one"), (2, 2, "two"), (3, 3, "three")]
        cursor.execute(
            "SELECT pg_get_serial_sequence('fresh2.counter', 'big'), "
            "format_type(seqtypid, NULL) FROM pg_sequence "
            "WHERE seqrelid = pg_get_serial_sequence('fresh2.counter', 'big')::regclass"
        )
        assert cursor.fetchone() == ("fresh2.counter_big_seq", "bigint")


def test_a_clone_has_the_templates_views_reading_its_own_tables() -> None:
    run("migrate_schemata", "--schema", "fresh1", interactive=False)
    add_serials_and_views("fresh1")

    clone_schema("fresh1", "fresh2")

    with connections["default"].cursor() as cursor:
        cursor.execute(
            "INSERT INTO fresh2.testapp_note (title) VALUES ('clone');"
            "INSERT INTO fresh2.counter (label) VALUES ('three');"
            "REFRESH MATERIALIZED VIEW fresh2.labels"
        )
        cursor.execute("SELECT array_agg(title ORDER BY title) FROM fresh2.titles")
        assert cursor.fetchone() == (["CLONE", "TEMPLATE"],)
        cursor.execute("SELECT array_agg(label ORDER BY label) FROM fresh2.labels")
        assert cursor.fetchone() == (["one", "three", "two"],)
        cursor.execute("SELECT array_agg(title) FROM fresh1.titles")
        assert cursor.fetchone() == (["TEMPLATE"],)
