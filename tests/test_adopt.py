"""Adopting a project migrated as a single tenant: the test database's public was migrated
with no shared apps, so seen with shared apps it holds every tenant app's tables, as a project
that starts using schemas does. Each test runs in a transaction that is rolled back, DDL
included, so public is left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

import schemata
from schemata.conf import conf
from schemata.moving import search_path
from tests.seedapp.models import Seed
from tests.test_commands_migrate import ON_DISK, recorded, relation, run
from tests.testapp.models import Note

SHARED = ["contenttypes", "auth", "sessions"]
#: Every table of the tenant apps, in the order adopt_schema moves them.
TENANT_TABLES = [
    "authtoken_token",
    "django_admin_log",
    "schemata_auth_membership",
    "seedapp_seed",
    "testapp_note",
    "testapp_tag",
]


@pytest.fixture
def project(db: None) -> Iterator[None]:
    """public as a single-tenant project left it, seen with shared auth; rolled back."""
    with override_settings(SCHEMATA_SHARED_APPS=SHARED):
        yield


def sql(query: str) -> list[tuple[object, ...]]:
    with connections["default"].cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall() if cursor.description else []


def adopt(*args: str) -> list[str]:
    return run("adopt_schema", *args)


@pytest.mark.usefixtures("project")
class TestAdoptSchema:
    def test_moves_every_tenant_table_into_a_new_schema_and_says_so(self) -> None:
        lines = adopt("fresh1")

        assert lines == [
            "fresh1: schema created",
            *(f"public.{table} -> fresh1.{table}" for table in TENANT_TABLES),
            f"fresh1.django_migrations: {len(recorded('public') & ON_DISK)} migrations, as in "
            f"public",
        ]
        assert [relation(f"public.{table}") for table in TENANT_TABLES] == [None] * 6

    def test_keeps_the_rows_and_their_links_to_shared_users(self) -> None:
        owner = User.objects.create(username="owner")
        Seed.objects.create(label="mine", owner=owner)
        Note.objects.create(title="kept").tags.create(label="tagged")

        adopt("fresh1")

        assert sql(
            "SELECT s.label, u.username FROM fresh1.seedapp_seed s "
            "JOIN public.auth_user u ON u.id = s.owner_id"
        ) == [("mine", "owner")]
        assert sql(
            "SELECT n.title, t.label FROM fresh1.testapp_note n "
            "JOIN fresh1.testapp_tag t ON t.note_id = n.id"
        ) == [("kept", "tagged")]

    def test_the_next_row_continues_the_ids_of_the_moved_table(self) -> None:
        last = Note.objects.create(title="last before").pk

        adopt("fresh1")

        assert sql("INSERT INTO fresh1.testapp_note (title) VALUES ('next') RETURNING id") == [
            (last + 1,)
        ]

    def test_records_every_migration_public_records_and_leaves_them_there(self) -> None:
        before = recorded("public")

        adopt("fresh1")

        assert recorded("public") == before
        assert recorded("fresh1") == before & ON_DISK == ON_DISK

    def test_leaves_a_history_django_accepts(self) -> None:
        adopt("fresh1")

        connection = connections["default"]
        with connection.cursor() as cursor, search_path(cursor, "fresh1"):
            MigrationLoader(connection).check_consistent_history(connection)

    def test_clears_the_check_that_stopped_migrate(self) -> None:
        with pytest.raises(SystemCheckError, match="schemata.E011"):
            call_command("check", databases=["default"])

        adopt("fresh1")

        call_command("check", databases=["default"])

    def test_a_dry_run_says_what_it_would_do_and_changes_nothing(self) -> None:
        lines = adopt("fresh1", "--dry-run")

        assert lines[0] == "fresh1: schema created"
        assert lines[-1] == "Dry run: nothing was changed."
        assert relation("public.testapp_note") == "testapp_note"
        assert sql("SELECT to_regnamespace('fresh1')") == [(None,)]

    def test_refuses_a_schema_that_holds_tables(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            adopt("alpha")

        assert str(excinfo.value).startswith("alpha already has auth_group, ")
        assert str(excinfo.value).endswith(
            ": adopt_schema needs a new or empty schema; nothing was moved."
        )
        assert relation("public.testapp_note") == "testapp_note"

    def test_refuses_a_schema_no_domain_names(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            adopt("shop")

        assert str(excinfo.value) == (
            "Unknown schema 'shop': add a domain for it to SCHEMATA_DOMAINS first."
        )

    def test_refuses_while_public_has_not_applied_a_tenant_migration(self) -> None:
        sql("DELETE FROM django_migrations WHERE app = 'seedapp' AND name = '0003_seed_owner'")

        with pytest.raises(CommandError) as excinfo:
            adopt("fresh1")

        assert str(excinfo.value) == (
            "public has not applied seedapp.0003_seed_owner, so its tables may not be the "
            "models' yet: migrate it first with SCHEMATA_SHARED_APPS unset, so that migrate "
            "reaches the tenant apps there; nothing was moved."
        )
        assert relation("public.seedapp_seed") == "seedapp_seed"

    def test_refuses_a_foreign_key_from_a_table_left_in_public(self) -> None:
        sql("CREATE TABLE public.report (note_id bigint REFERENCES public.testapp_note)")

        with pytest.raises(CommandError) as excinfo:
            adopt("fresh1")

        assert str(excinfo.value) == (
            "public.report has a foreign key to public.testapp_note, which would move to "
            "fresh1: move its app along; nothing was moved."
        )
        assert sql("SELECT to_regnamespace('fresh1')") == [(None,)]

    @override_settings(SCHEMATA_SHARED_APPS=[*SHARED, "admin", "authtoken", "schemata_auth"])
    def test_refuses_when_public_holds_no_tenant_table(self) -> None:
        for table in ("seedapp_seed", "testapp_tag", "testapp_note"):
            sql(f"DROP TABLE public.{table}")

        with pytest.raises(CommandError) as excinfo:
            adopt("fresh1")

        assert str(excinfo.value) == "public has no table of a tenant app: nothing to adopt."


@pytest.mark.usefixtures("project")
class TestMoveAppFromPublic:
    def test_moves_from_public_by_default_and_records_the_shared_apps_it_depends_on(
        self,
    ) -> None:
        lines = run("move_app", "seedapp", "--to", "fresh1")

        assert lines == [
            "fresh1: schema created",
            "public.seedapp_seed -> fresh1.seedapp_seed",
            f"fresh1.django_migrations: 3 migrations of seedapp, and "
            f"{len([key for key in ON_DISK if key[0] in conf.SHARED_APPS])} of the shared apps",
        ]
        connection = connections["default"]
        with connection.cursor() as cursor, search_path(cursor, "fresh1"):
            MigrationLoader(connection).check_consistent_history(connection)

    def test_a_second_app_joins_without_recording_the_shared_apps_twice(self) -> None:
        run("move_app", "seedapp", "--to", "fresh1")

        lines = run("move_app", "testapp", "--to", "fresh1")

        assert lines[-1] == "fresh1.django_migrations: 1 migrations of testapp"

    @override_settings(SCHEMATA_SHARED_APPS=["sessions"])
    def test_refuses_a_history_migrate_would_refuse(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            run("move_app", "seedapp", "--to", "fresh1")

        assert str(excinfo.value) == (
            "fresh1 would record seedapp.0003_seed_owner without its dependency "
            "auth.0001_initial: move the app 'auth' along; nothing was moved."
        )
        assert sql("SELECT to_regnamespace('fresh1')") == [(None,)]

    def test_refuses_a_foreign_key_to_a_tenant_table_left_behind(self) -> None:
        sql("ALTER TABLE public.testapp_note ADD seed_id bigint REFERENCES public.seedapp_seed")

        with pytest.raises(CommandError) as excinfo:
            run("move_app", "testapp", "--to", "fresh1")

        assert str(excinfo.value) == (
            "public.testapp_note has a foreign key to public.seedapp_seed, which would stay "
            "behind: move its app along; nothing was moved."
        )

    def test_moves_apps_linked_by_a_foreign_key_together(self) -> None:
        sql("ALTER TABLE public.testapp_note ADD seed_id bigint REFERENCES public.seedapp_seed")

        lines = run("move_app", "testapp", "seedapp", "--to", "fresh1")

        assert lines[1:4] == [
            "public.seedapp_seed -> fresh1.seedapp_seed",
            "public.testapp_note -> fresh1.testapp_note",
            "public.testapp_tag -> fresh1.testapp_tag",
        ]


def test_a_single_tenant_project_is_adopted_and_served_by_its_schema(tmp_path: Path) -> None:
    """The whole story, with a real manage.py and a database of its own, committed."""
    name = f"{connections['default'].settings_dict['NAME']}_project"
    with admin_connection() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        manage(name, "tests.settings", "migrate", "-v0")
        manage(name, "tests.settings", "shell", "-c", SEED)

        adopted = manage(name, "tests.adopt_settings", "adopt_schema", "shop")
        migrated = manage(name, "tests.adopt_settings", "migrate_schemata")
        served = manage(name, "tests.adopt_settings", "shell", "-c", READ)

        assert "public.seedapp_seed -> shop.seedapp_seed" in adopted.stdout.splitlines()
        assert migrated.stdout.splitlines()[-1] == "Summary: 1 up to date."
        assert "Applying" not in migrated.stdout
        assert served.stdout.splitlines()[-2:] == ["['kept']", "mine owner"]
    finally:
        with admin_connection() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SEED = """
from django.contrib.auth.models import User
from tests.seedapp.models import Seed
from tests.testapp.models import Note
Note.objects.create(title="kept")
Seed.objects.create(label="mine", owner=User.objects.create(username="owner"))
"""

READ = """
import schemata
from tests.seedapp.models import Seed
from tests.testapp.models import Note
with schemata.override("shop"):
    print(list(Note.objects.values_list("title", flat=True)))
    seed = Seed.objects.select_related("owner").get(label="mine")
    print(seed.label, seed.owner.username)
"""


def admin_connection() -> psycopg.Connection[Any]:
    params = connections["default"].get_connection_params()
    return psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True)


def manage(database: str, settings: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``django-admin`` as a project would, on ``database``."""
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": settings,
        # The package under test first, as this process imports it.
        "PYTHONPATH": os.pathsep.join([str(Path(schemata.__file__).parent.parent), *sys.path]),
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
