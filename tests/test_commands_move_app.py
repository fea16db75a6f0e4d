"""move_app with an app whose migrations were squashed (the replaced ones gone from disk)
after public applied them one by one. Each test is rolled back, DDL included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

from schemata.moving import search_path
from tests.test_commands_migrate import recorded, run

SHARED = ["contenttypes", "auth", "sessions"]


@pytest.fixture
def squashed(db: None) -> Iterator[None]:
    """Shared auth; seedapp's first two migrations squashed into one."""
    with override_settings(
        SCHEMATA_SHARED_APPS=SHARED,
        MIGRATION_MODULES={"seedapp": "tests.squashed_migrations"},
    ):
        yield


def test_an_app_squashed_since_its_tables_were_made_moves_with_the_records_it_has(
    squashed: None,
) -> None:
    lines = run("move_app", "seedapp", "--to", "fresh1")

    assert lines[:2] == ["fresh1: schema created", "public.seedapp_seed -> fresh1.seedapp_seed"]
    assert lines[2].startswith("fresh1.django_migrations: 3 migrations of seedapp, and ")
    assert {name for app, name in recorded("fresh1") if app == "seedapp"} == {
        "0001_initial",
        "0002_seed",
        "0003_seed_owner",
    }
    connection = connections["default"]
    with connection.cursor() as cursor, search_path(cursor, "fresh1"):
        MigrationLoader(connection).check_consistent_history(connection)
