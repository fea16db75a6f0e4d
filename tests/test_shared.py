from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connections
from django.test import override_settings

import schemata
from schemata import NoActiveSchema
from schemata.conf import conf
from schemata.routers import SchemataRouter
from schemata.schemas import create_schema
from tests.conftest import drop_fresh, forget_schema_connections
from tests.seedapp.models import Seed
from tests.test_commands_migrate import ON_DISK, applied, recorded, relation, run
from tests.test_connections import in_thread
from tests.testapp.models import Note

SHARED = ["contenttypes", "auth", "sessions"]


@pytest.fixture
def shared(transactional_db: None) -> Iterator[None]:
    """Shared contenttypes, auth and sessions; fresh1 and fresh2 migrated as tenants."""
    drop_fresh()
    with override_settings(SCHEMATA_SHARED_APPS=SHARED):
        forget_schema_connections()
        run("migrate_schemata", "--schema", "fresh1", "--schema", "fresh2", interactive=False)
        yield
        forget_schema_connections()
    drop_fresh()
    User.objects.using("default").all().delete()


def tables(schema: str) -> set[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind = 'r'",
            [schema],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.usefixtures("shared")
class TestSharedApps:
    def test_tenant_tables_are_in_the_schema_and_shared_tables_only_in_public(self) -> None:
        assert tables("fresh1") == {
            "authtoken_token",
            "django_admin_log",
            "django_migrations",
            "schemata_auth_membership",
            "seedapp_seed",
            "testapp_note",
            "testapp_tag",
        }
        assert {"auth_user", "django_content_type", "django_session"} <= tables("public")

    def test_schema_connections_search_the_schema_then_public(self) -> None:
        def search_path() -> str:
            with connections["fresh1"].cursor() as cursor:
                cursor.execute("SHOW search_path")
                path: str = cursor.fetchone()[0]
                return path

        assert in_thread(search_path) == "fresh1,schemata_guard,public"

    def test_migrate_schemata_migrates_public_first(self) -> None:
        call_command("migrate", "seedapp", "0002", database="default", verbosity=0)

        lines = run("migrate_schemata", "--schema", "fresh1", "--public", interactive=False)

        assert lines[0] == "[public] Operations to perform:"
        assert "[public]   Applying seedapp.0003_seed_owner... OK" in lines
        assert lines[-1] == "Summary: 1 up to date."
        assert ("seedapp", "0003_seed_owner") in recorded("public")

    def test_each_schema_records_every_migration(self) -> None:
        assert recorded("fresh1") == recorded("public")

    def test_a_tenant_row_can_point_to_a_shared_row(self) -> None:
        def scenario() -> tuple[str, str | None]:
            user = User.objects.create(username="shared-owner")
            with schemata.override("fresh1"):
                Seed.objects.create(label="mine", owner=user)
                seed = Seed.objects.select_related("owner").get(label="mine")
            return seed.owner.username, seed._state.db  # type: ignore[union-attr]

        assert in_thread(scenario) == ("shared-owner", "fresh1")
        assert User.objects.using("default").filter(username="shared-owner").exists()

    def test_shared_and_tenant_writes_roll_back_together(self) -> None:
        def scenario() -> None:
            with pytest.raises(ValueError), schemata.override("fresh2"), schemata.atomic():
                owner = User.objects.create(username="rolled-back")
                Seed.objects.create(label="rolled back", owner=owner)
                raise ValueError

        in_thread(scenario)

        assert not User.objects.using("default").filter(username="rolled-back").exists()
        assert not Seed.objects.using("fresh2").filter(label="rolled back").exists()

    def test_a_request_reads_shared_and_writes_tenant_data_in_one_connection(self) -> None:
        from django.test import Client

        def scenario() -> object:
            User.objects.create(username="reader")
            return (
                Client()
                .get("/notes/", {"title": "from a request"}, HTTP_HOST="fresh1.example.com")
                .json()
            )

        body = in_thread(scenario)

        assert body["db"] == "fresh1"  # type: ignore[index]
        assert Note.objects.using("fresh1").filter(title="from a request").exists()

    def test_content_types_live_once_in_public_and_the_cache_works_per_alias(self) -> None:
        def scenario() -> tuple[int, int, bool]:
            in_schema = ContentType.objects.db_manager("fresh1").get_for_model(Note)
            in_public = ContentType.objects.db_manager("default").get_for_model(Note)
            cached = ContentType.objects.db_manager("fresh1").get_for_model(Note) is in_schema
            return in_schema.pk, in_public.pk, cached

        schema_pk, public_pk, cached = in_thread(scenario)

        assert schema_pk == public_pk
        assert cached
        assert ContentType.objects.using("default").filter(app_label="testapp").count() == 2

    def test_allow_migrate_puts_shared_apps_in_public_and_the_rest_in_schemas(self) -> None:
        router = SchemataRouter()

        assert router.allow_migrate("default", "auth") is True
        assert router.allow_migrate("fresh1", "auth") is False
        assert router.allow_migrate("fresh1", "testapp") is True
        assert router.allow_migrate("default", "testapp") is False

    @override_settings(SCHEMATA_STRICT=True)
    def test_strict_mode_lets_shared_models_through_with_no_schema(self) -> None:
        assert User.objects.count() == 0
        with pytest.raises(NoActiveSchema):
            Note.objects.count()

    def test_tenant_tables_left_in_public_fail_the_database_checks(self) -> None:
        # The test database's public schema was migrated before apps were shared.
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check", databases=["default"])

        assert (
            "?: (schemata.E011) public.testapp_note belongs to the tenant app 'testapp': a "
            "schema that lacks its own testapp_note would silently read and write this one."
            in str(excinfo.value)
        )
        assert (
            "HINT: Make public's tenant data a tenant with 'manage.py adopt_schema SCHEMA', move "
            "this app alone with 'manage.py move_app testapp --to SCHEMA', or drop it."
            in str(excinfo.value)
        )

    def test_manage_schemata_reports_tenant_tables_left_in_public(self) -> None:
        lines = run("manage_schemata", "--dry-run")

        assert (
            "public.testapp_note: table of the tenant app 'testapp' left in public; a schema "
            "without its own would use it. Adopt public's tenant tables as a schema "
            "(adopt_schema SCHEMA), move this app (move_app testapp --to SCHEMA) or drop it."
            in lines
        )

    def test_an_extension_installed_in_a_schema_fails_the_database_checks(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("CREATE EXTENSION citext SCHEMA fresh2")

        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check", databases=["default"])

        assert (
            "?: (schemata.E012) The extension 'citext' is installed in the schema 'fresh2', "
            "where no other schema sees its types and functions." in str(excinfo.value)
        )


@pytest.mark.django_db
class TestSharedChecks:
    @override_settings(SCHEMATA_SHARED_APPS=["contenttypes", "seedapp"])
    def test_a_shared_model_pointing_to_a_tenant_model_fails_the_checks(self) -> None:
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check")

        assert (
            "seedapp.Seed.owner: (schemata.E010) seedapp.Seed.owner (shared, in public) points "
            "to auth.User, whose tables are in each schema." in str(excinfo.value)
        )

    @override_settings(SCHEMATA_SHARED_APPS=["nope"])
    def test_unknown_shared_app_labels_fail_the_checks(self) -> None:
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check")

        assert (
            "?: (schemata.E008) SCHEMATA_SHARED_APPS names 'nope', which is not an installed "
            "app label." in str(excinfo.value)
        )

    @override_settings(SCHEMATA_EXTENSION_SCHEMAS=["Bad Name"])
    def test_invalid_extension_schemas_fail_the_checks(self) -> None:
        with pytest.raises(SystemCheckError) as excinfo:
            call_command("check")

        assert (
            "?: (schemata.E009) SCHEMATA_EXTENSION_SCHEMAS: schema name 'Bad Name' is invalid"
            in (str(excinfo.value))
        )

    @override_settings(SCHEMATA_SHARED_APPS=SHARED, SCHEMATA_EXTENSION_SCHEMAS=["extensions"])
    def test_extension_schemas_follow_public_on_every_schema_path(self) -> None:
        databases = conf.databases

        assert databases.search_path("alpha") == "alpha,schemata_guard,public,extensions"


@pytest.mark.usefixtures("fresh")
class TestMoveApp:
    def test_moves_tables_with_their_data_and_records_both_ways(self) -> None:
        run("migrate_schemata", "--schema", "fresh1", interactive=False)
        run("manage_schemata")
        call_command("migrate", "seedapp", database="fresh2", verbosity=0)  # no testapp tables
        connections["fresh2"].close()
        with schemata.override("fresh1"):
            Note.objects.create(title="travels")
        connections["fresh1"].close()

        lines = run("move_app", "testapp", "--from", "fresh1", "--to", "fresh2")

        assert lines == [
            "fresh1.testapp_note -> fresh2.testapp_note",
            "fresh1.testapp_tag -> fresh2.testapp_tag",
            "fresh2.django_migrations: 1 migrations of testapp",
        ]
        assert relation("fresh1.testapp_note") is None
        assert {key for key in recorded("fresh2") if key[0] == "testapp"} == {
            ("testapp", "0001_initial")
        }
        with schemata.override("fresh2"):
            assert list(Note.objects.values_list("title", flat=True)) == ["travels"]
            Note.objects.create(title="next id")  # its identity sequence came along
        connections["fresh2"].close()

        back = run("move_app", "testapp", "--from", "fresh2", "--to", "fresh1")

        assert back[0] == "fresh2.testapp_note -> fresh1.testapp_note"
        with schemata.override("fresh1"):
            assert sorted(Note.objects.values_list("title", flat=True)) == ["next id", "travels"]
        connections["fresh1"].close()

    def test_creates_a_missing_target_and_migrate_schemata_completes_both(self) -> None:
        run("migrate_schemata", "--schema", "fresh1", interactive=False)

        lines = run("move_app", "testapp", "--from", "fresh1", "--to", "fresh2")
        migrated = run("migrate_schemata", "--schema", "fresh1", "--schema", "fresh2", verbosity=2)

        assert lines[0] == "fresh2: schema created"
        # The source forgot testapp's migrations, so it gets new, empty tables.
        assert "[fresh1]   Applying testapp.0001_initial... OK" in applied(migrated)
        assert "[fresh2]   Applying seedapp.0001_initial... OK" in applied(migrated)
        assert "[fresh2]   Applying testapp.0001_initial... OK" not in applied(migrated)
        assert recorded("fresh1") == recorded("fresh2") == ON_DISK

    def test_refuses_when_the_target_already_has_the_tables(self) -> None:
        run("migrate_schemata", "--schema", "fresh1", interactive=False)

        with pytest.raises(CommandError) as excinfo:
            run("move_app", "testapp", "--from", "fresh1", "--to", "public")

        assert str(excinfo.value) == (
            "public already has testapp_note, testapp_tag; nothing was moved."
        )
        assert relation("fresh1.testapp_note") == "fresh1.testapp_note"

    def test_refuses_unknown_schemas_apps_and_empty_sources(self) -> None:
        create_schema("fresh3")

        with pytest.raises(CommandError, match="Unknown schema 'nope'"):
            run("move_app", "testapp", "--from", "nope", "--to", "public")
        with pytest.raises(CommandError, match="No installed app with label 'nope'"):
            run("move_app", "nope", "--from", "fresh1", "--to", "public")
        with pytest.raises(CommandError, match="--from and --to name the same schema."):
            run("move_app", "testapp", "--from", "fresh1", "--to", "fresh1")
        with pytest.raises(CommandError, match="There is no schema 'fresh1'; nothing was moved."):
            run("move_app", "testapp", "--from", "fresh1", "--to", "fresh4")
        with pytest.raises(
            CommandError, match="fresh3 has no table of 'testapp': nothing to move"
        ):
            run("move_app", "testapp", "--from", "fresh3", "--to", "fresh4")
