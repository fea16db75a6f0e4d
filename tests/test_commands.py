from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from schemata.schemas import create_schema, existing_schemas

pytestmark = pytest.mark.django_db

EXPECTED_EXISTING = ["alpha: exists", "beta: exists"]
EXPECTED_LIGHT = [f"t{i:02}: exists" for i in range(64)]
MISSING = ["ghost", "fresh1", "fresh2", "fresh3", "fresh4"]


def missing(state: str) -> list[str]:
    return [f"{name}: {state}" for name in MISSING]


def manage_schemata(*args: str) -> list[str]:
    out = StringIO()
    call_command("manage_schemata", *args, stdout=out)
    return out.getvalue().splitlines()


def test_dry_run_says_what_it_would_create_and_changes_nothing() -> None:
    lines = manage_schemata("--dry-run")

    assert lines == [*EXPECTED_EXISTING, *missing("would be created"), *EXPECTED_LIGHT]
    assert "ghost" not in existing_schemas()


def test_missing_schemas_are_created_and_a_rerun_changes_nothing() -> None:
    first = manage_schemata()
    second = manage_schemata()

    assert first == [*EXPECTED_EXISTING, *missing("created"), *EXPECTED_LIGHT]
    assert second == [*EXPECTED_EXISTING, *missing("exists"), *EXPECTED_LIGHT]
    assert "ghost" in existing_schemas()


def test_schemas_no_domain_names_are_listed_and_left_alone() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute('CREATE SCHEMA "Stray"')

    lines = manage_schemata()

    assert lines[-1] == "Stray: in the database, named by no domain (left alone)"
    assert "Stray" in existing_schemas()


def test_schemas_an_extension_created_are_not_listed() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE SCHEMA citus_internal")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS citext")
        # What CREATE SCHEMA in an extension's script records: the schema is a member of the
        # extension (pg_depend, deptype 'e'), dropped with it.
        cursor.execute("ALTER EXTENSION citext ADD SCHEMA citus_internal")
        cursor.execute("CREATE SCHEMA stray_beside")

    lines = manage_schemata("--dry-run")

    assert lines[-1] == "stray_beside: in the database, named by no domain (left alone)"
    assert not any(line.startswith("citus_internal") for line in lines)


def test_create_schema_reports_an_existing_schema() -> None:
    assert create_schema("alpha") is False


def create_stray() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE SCHEMA stray")
        cursor.execute("CREATE TABLE stray.kept (id int)")


def test_drop_refuses_a_schema_that_settings_still_name() -> None:
    with pytest.raises(CommandError) as excinfo:
        manage_schemata("--drop", "alpha", "--noinput")

    assert str(excinfo.value) == (
        "Refusing to drop 'alpha': SCHEMATA_DOMAINS still names it. Remove its domains from "
        "the settings first."
    )
    assert "alpha" in existing_schemas()


def test_drop_refuses_a_schema_that_does_not_exist() -> None:
    with pytest.raises(CommandError, match="There is no schema 'nothing' to drop."):
        manage_schemata("--drop", "nothing", "--noinput")


def test_drop_asks_for_confirmation_and_a_no_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_stray()
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "no"

    monkeypatch.setattr("builtins.input", answer)

    with pytest.raises(CommandError, match="Drop cancelled: nothing was changed."):
        manage_schemata("--drop", "stray")

    assert prompts == [
        "This drops the schema 'stray' and every table and row in it.\n"
        "Type 'yes' to continue, or anything else to cancel: "
    ]
    assert "stray" in existing_schemas()


def test_drop_with_yes_drops_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    create_stray()
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")

    assert manage_schemata("--drop", "stray") == ["stray: dropped"]
    assert "stray" not in existing_schemas()


def test_drop_dry_run_and_noinput(monkeypatch: pytest.MonkeyPatch) -> None:
    create_stray()
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked"))

    assert manage_schemata("--drop", "stray", "--dry-run") == ["stray: would be dropped"]
    assert "stray" in existing_schemas()
    assert manage_schemata("--drop", "stray", "--noinput") == ["stray: dropped"]
    assert "stray" not in existing_schemas()


def test_drop_ends_the_connections_still_open_on_the_schema() -> None:
    import psycopg

    create_stray()
    params = connections["default"].get_connection_params()
    on_stray = psycopg.connect(**{**params, "application_name": "schemata:stray"})
    elsewhere = psycopg.connect(**{**params, "application_name": "schemata:alpha"})

    lines = manage_schemata("--drop", "stray", "--noinput")

    assert lines == ["stray: dropped, 1 open connections ended"]
    with pytest.raises(psycopg.OperationalError):
        on_stray.execute("SELECT 1")
    assert elsewhere.execute("SELECT 1").fetchone() == (1,)
    on_stray.close()
    elsewhere.close()
