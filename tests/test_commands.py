from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connections

from schemata.schemas import create_schema, existing_schemas

pytestmark = pytest.mark.django_db

EXPECTED_EXISTING = ["alpha: exists", "beta: exists"]
EXPECTED_LIGHT = [f"t{i:02}: exists" for i in range(64)]


def manage_schemata(*args: str) -> list[str]:
    out = StringIO()
    call_command("manage_schemata", *args, stdout=out)
    return out.getvalue().splitlines()


def test_dry_run_says_what_it_would_create_and_changes_nothing() -> None:
    lines = manage_schemata("--dry-run")

    assert lines == [*EXPECTED_EXISTING, "ghost: would be created", *EXPECTED_LIGHT]
    assert "ghost" not in existing_schemas()


def test_missing_schemas_are_created_and_a_rerun_changes_nothing() -> None:
    first = manage_schemata()
    second = manage_schemata()

    assert first == [*EXPECTED_EXISTING, "ghost: created", *EXPECTED_LIGHT]
    assert second == [*EXPECTED_EXISTING, "ghost: exists", *EXPECTED_LIGHT]
    assert "ghost" in existing_schemas()


def test_schemas_no_domain_names_are_listed_and_left_alone() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute('CREATE SCHEMA "Stray"')

    lines = manage_schemata()

    assert lines[-1] == "Stray: in the database, named by no domain (left alone)"
    assert "Stray" in existing_schemas()


def test_create_schema_reports_an_existing_schema() -> None:
    assert create_schema("alpha") is False
