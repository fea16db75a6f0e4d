from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.migrations.loader import MigrationLoader
from django.db.models.signals import post_migrate, pre_migrate
from django.test import override_settings

from schemata.backend import schema_wrapper
from schemata.migrator import applied_migrations, finished_schemas, up_to_date_schemas
from schemata.schemas import create_schema
from schemata.statecache import check_django, forget_states
from schemata.workers import Outcome, Status
from tests.conftest import FRESH_SCHEMAS, forget_schema_connections
from tests.testapp.models import Note

FRESH = FRESH_SCHEMAS
ON_DISK = set(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)

SchemaWrapper = schema_wrapper(DatabaseWrapper)


def run(*args: str, **options: Any) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out, **options)
    return out.getvalue().splitlines()


def assert_testapp_migrations_of_alpha_and_beta(lines: list[str]) -> None:
    """The output of showmigrations testapp on alpha and beta, as the per-schema commands
    print it."""
    assert lines[:2] + lines[3:] == [
        "[alpha] testapp",
        "[alpha]  [X] 0001_initial",
        "[beta] testapp",
        "[beta]  [X] 0001_initial",
        "Summary: 2 done.",
    ]
    # Off a terminal, a line at each tenth of the schemas done (not after the last).
    assert re.fullmatch(r"Progress: 1/2 schemas, 0 failed, about \d+s left", lines[2])


def columns(schema: str, table: str) -> set[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            [schema, table],
        )
        return {row[0] for row in cursor.fetchall()}


def migrate_fresh(*names: str, **options: Any) -> list[str]:
    """``migrate_schemata --schema NAME...``; other arguments (``--public``, an app label and
    a target) follow the schema names."""
    schemas = [name for name in names if name.startswith("fresh")]
    extra = [name for name in names if not name.startswith("fresh")]
    args = [arg for name in schemas for arg in ("--schema", name)]
    # Each schema's own output is shown from verbosity 2 (migrate's too, with its timings).
    options.setdefault("verbosity", 2)
    return applied(run("migrate_schemata", *args, *extra, interactive=False, **options))


def applied(lines: list[str]) -> list[str]:
    """``lines`` without the time that ``migrate`` adds to each migration from verbosity 2."""
    return [re.sub(r" \(\d+\.\d+s\)$", "", line) for line in lines]


def relation(name: str) -> str | None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)::text", [name])
        found: str | None = cursor.fetchone()[0]
        return found


def seeds(schema: str) -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {schema}.seedapp_seed")
        count: int = cursor.fetchone()[0]
        return count


def labels(schema: str) -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT label FROM {schema}.seedapp_seed ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def recorded(schema: str) -> set[tuple[str, str]]:
    return applied_migrations([schema]).get(schema, set())


def with_public_on_path(alias: str) -> None:
    """Give this thread a connection for ``alias`` whose search path also holds ``public``."""
    settings = connections[alias].settings_dict
    options = {**settings["OPTIONS"], "options": f"-c search_path={alias},public"}
    connections[alias].close()
    connections[alias] = SchemaWrapper({**settings, "OPTIONS": options}, alias)


def content_types(schema: str) -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {schema}.django_content_type")
        count: int = cursor.fetchone()[0]
        return count


def shape(schema: str) -> list[Any]:
    """Columns, indexes and constraints of ``schema``, its name taken out."""
    queries = [
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = %(s)s",
        "SELECT indexname, replace(indexdef, %(s)s || '.', '') FROM pg_indexes "
        "WHERE schemaname = %(s)s",
        "SELECT conname, replace(pg_get_constraintdef(oid), %(s)s || '.', '') "
        "FROM pg_constraint WHERE connamespace = %(s)s::regnamespace",
    ]
    with connections["default"].cursor() as cursor:
        found = []
        for query in queries:
            cursor.execute(query, {"s": schema})
            found.append(sorted(cursor.fetchall()))
        return found


def sabotage(schema: str) -> None:
    """Make ``schema``'s migration fail: a table the first test app migration creates."""
    with connections["default"].cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
        cursor.execute(f"CREATE TABLE {schema}.testapp_note (id int)")


@pytest.mark.usefixtures("fresh")
class TestMigrateSchemata:
    def test_a_fresh_schema_is_created_and_fully_migrated_beside_a_migrated_public(self) -> None:
        assert relation("public.django_migrations") == "django_migrations"

        lines = migrate_fresh("fresh1", verbosity=2)

        assert lines[:2] == ["[fresh1] schema created", "[fresh1] Operations to perform:"]
        assert "[fresh1]   Applying testapp.0001_initial... OK" in applied(lines)
        assert lines[-1] == "Summary: 1 applied."
        assert recorded("fresh1") == ON_DISK
        assert relation("fresh1.testapp_note") == "fresh1.testapp_note"

    def test_at_verbosity_1_only_failed_schemas_show_their_migrate_output(self) -> None:
        with connections["default"].cursor() as cursor:
            # fresh3 already has the table that its first migration creates.
            cursor.execute("CREATE SCHEMA fresh3; CREATE TABLE fresh3.testapp_note (id int)")

        out = StringIO()
        with pytest.raises(CommandError):
            call_command(
                "migrate_schemata",
                *("--schema", "fresh1", "--schema", "fresh2", "--schema", "fresh3"),
                interactive=False,
                stdout=out,
                stderr=out,
            )
        lines = out.getvalue().splitlines()

        assert lines[0] == "2 schemas created."
        assert not [line for line in lines if line.startswith(("[fresh1]", "[fresh2]"))]
        assert "[fresh3]   Applying testapp.0001_initial..." in lines
        assert lines[-1] == "Summary: 2 applied, 1 failed."
        assert recorded("fresh1") == recorded("fresh2") == ON_DISK

    def test_a_migration_whose_record_fails_is_undone_with_its_deferred_sql(self) -> None:
        # seedapp 0003 adds a foreign key: Django creates it after the column, as deferred SQL,
        # and records the migration only then.
        migrate_fresh("fresh1", "seedapp", "0002_seed")
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION fresh1.refuse() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'record refused'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON fresh1.django_migrations FOR EACH ROW "
                "WHEN (NEW.name = '0003_seed_owner') EXECUTE FUNCTION fresh1.refuse()"
            )

        with pytest.raises(CommandError, match="record refused"):
            migrate_fresh("fresh1")

        assert "owner_id" not in columns("fresh1", "seedapp_seed")
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse ON fresh1.django_migrations")
        migrate_fresh("fresh1")
        assert recorded("fresh1") == ON_DISK
        assert "owner_id" in columns("fresh1", "seedapp_seed")

    def test_run_python_without_using_writes_into_the_schema_being_migrated(self) -> None:
        public_before = seeds("public")

        migrate_fresh("fresh1")

        assert seeds("fresh1") == 1
        assert seeds("public") == public_before

    def test_a_fresh_schema_with_public_on_its_path_is_still_fully_migrated(self) -> None:
        run("manage_schemata")
        with_public_on_path("fresh1")
        connection = connections["fresh1"]

        with connection.cursor() as cursor:
            assert connection.introspection.table_names(cursor) == []
        call_command("migrate", database="fresh1", verbosity=0)

        assert recorded("fresh1") == ON_DISK
        with connection.cursor() as cursor:
            cursor.execute("SHOW search_path")
            assert cursor.fetchone() == ("fresh1,public",)
            assert "testapp_note" in connection.introspection.table_names(cursor)
        connection.close()

    def test_flushing_an_empty_schema_leaves_public_alone(self) -> None:
        Note.objects.using("default").create(title="public survives")
        run("manage_schemata")
        with_public_on_path("fresh1")

        call_command("flush", database="fresh1", interactive=False, verbosity=0)

        assert Note.objects.using("default").filter(title="public survives").exists()
        connections["fresh1"].close()

    def test_a_rerun_skips_up_to_date_schemas_without_running_migrate(self) -> None:
        migrate_fresh("fresh1", "fresh2")
        calls: list[str] = []
        pre_migrate.connect(
            lambda using, **kwargs: calls.append(using), weak=False, dispatch_uid="test.calls"
        )

        try:
            lines = migrate_fresh("fresh1", "fresh2")
        finally:
            pre_migrate.disconnect(dispatch_uid="test.calls")

        assert calls == []
        assert lines == [
            "Summary: 2 up to date.",
        ]

    def test_up_to_date_detection_reads_every_schema_in_one_query(self) -> None:
        migrate_fresh("fresh1", "fresh2")
        migrate_fresh("fresh3", "testapp")  # the table, and some migrations
        connection = connections["default"]
        queries: list[str] = []

        def record(execute: Any, sql: str, *args: Any) -> Any:
            queries.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(record):
            current = up_to_date_schemas(["fresh1", "fresh2", "fresh3", "fresh4"])

        assert current == {"fresh1", "fresh2"}
        assert len(queries) == 2  # which schemas have the table; what they record

    def test_migration_rows_without_the_finished_marker_are_not_up_to_date(self) -> None:
        migrate_fresh("fresh1")
        create_schema("fresh3")
        # Migrated by plain migrate: every row, no marker of a finished migrate_schemata run.
        call_command("migrate", database="fresh3", verbosity=0)

        assert up_to_date_schemas(["fresh1", "fresh3"]) == {"fresh1"}

    def test_a_schema_interrupted_before_post_migrate_finished_is_finished_by_the_next_run(
        self,
    ) -> None:
        def crash(using: str, **kwargs: Any) -> None:
            if using == "fresh1":
                raise RuntimeError("killed during post_migrate")

        post_migrate.connect(crash, weak=False, dispatch_uid="test.crash")
        try:
            with pytest.raises(CommandError, match="killed during post_migrate"):
                migrate_fresh("fresh1")
        finally:
            post_migrate.disconnect(dispatch_uid="test.crash")
        assert recorded("fresh1") == ON_DISK  # every row, yet unfinished
        with connections["default"].cursor() as cursor:
            cursor.execute("TRUNCATE fresh1.django_content_type CASCADE")

        lines = migrate_fresh("fresh1")

        assert "[fresh1]   No migrations to apply." in lines
        assert content_types("fresh1") == content_types("alpha") != 0
        assert up_to_date_schemas(["fresh1"]) == {"fresh1"}

    def test_a_dead_workers_schema_counts_as_finished_only_when_marked(self) -> None:
        migrate_fresh("fresh1", "--public")
        run("manage_schemata")

        assert finished_schemas(["public", "fresh1", "fresh2"], {}) == {"public", "fresh1"}
        assert finished_schemas(["fresh1"], {"app_label": "testapp"}) == set()

    def test_states_of_more_plans_than_kept_are_recorded_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("schemata.statecache.KEPT_PLANS", 0)
        forget_states()

        migrate_fresh("fresh1", "fresh2")

        assert shape("fresh2") == shape("fresh1")

    def test_a_second_schema_reuses_the_states_of_the_first(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from django.db.migrations.state import ProjectState

        clones: list[None] = []
        clone = ProjectState.clone

        def counting_clone(state: ProjectState) -> ProjectState:
            clones.append(None)
            return clone(state)

        forget_states()
        check_django()  # before clone is replaced: the check reads its code
        monkeypatch.setattr(ProjectState, "clone", counting_clone)
        migrate_fresh("fresh1")
        first = len(clones)
        migrate_fresh("fresh2")
        monkeypatch.undo()

        assert len(clones) - first < first / 10
        assert shape("fresh2") == shape("fresh1")
        assert seeds("fresh2") == seeds("fresh1") == 1
        assert content_types("fresh2") == content_types("fresh1")

    def test_fake_initial_applies_migrations_without_reusing_states(self) -> None:
        from schemata import statecache

        forget_states()

        migrate_fresh("fresh1", "fresh2", fake_initial=True)

        assert recorded("fresh2") == recorded("fresh1") == ON_DISK
        assert shape("fresh2") == shape("fresh1")
        assert seeds("fresh2") == seeds("fresh1") == 1
        assert not statecache._tapes

    def test_a_migration_with_its_own_apply_runs_it_and_states_are_not_reused(self) -> None:
        from schemata import statecache

        forget_states()

        with override_settings(MIGRATION_MODULES={"seedapp": "tests.own_apply_migrations"}):
            migrate_fresh("fresh1", "fresh2")

        assert labels("fresh1") == labels("fresh2") == ["own apply"]
        assert not statecache._tapes

    def test_an_atomic_operation_of_a_non_atomic_migration_runs_in_a_transaction(self) -> None:
        forget_states()

        with override_settings(MIGRATION_MODULES={"seedapp": "tests.nonatomic_migrations"}):
            migrate_fresh("fresh1", "fresh2")

        assert labels("fresh1") == labels("fresh2") == ["in a transaction", "autocommit"]

    def test_a_migration_recorded_but_gone_from_disk_leaves_a_schema_up_to_date(self) -> None:
        migrate_fresh("fresh1")
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "INSERT INTO fresh1.django_migrations (app, name, applied) "
                "VALUES ('gone', '0001_initial', now())"
            )

        assert up_to_date_schemas(["fresh1"]) == {"fresh1"}

    def test_a_schema_counts_only_its_own_migrations_while_another_migrates_at_once(
        self,
    ) -> None:
        from schemata.migrator import migrate_schema

        run("manage_schemata")  # fresh1 created, not migrated
        alpha_held, fresh1_migrated = threading.Event(), threading.Event()
        options = {"verbosity": 0, "interactive": False}
        outcomes: list[Outcome] = []

        def hold_alpha(using: str, **kwargs: Any) -> None:
            if using == "alpha":
                alpha_held.set()
                fresh1_migrated.wait(30)

        def release_alpha(using: str, **kwargs: Any) -> None:
            if using == "fresh1":
                fresh1_migrated.set()

        def migrate_alpha() -> None:
            try:
                outcomes.append(migrate_schema("alpha", options))
            finally:
                connections.close_all()

        pre_migrate.connect(hold_alpha, dispatch_uid="test.hold_alpha")
        post_migrate.connect(release_alpha, dispatch_uid="test.release_alpha")
        try:
            alpha = threading.Thread(target=migrate_alpha)
            alpha.start()
            assert alpha_held.wait(30)
            fresh1 = migrate_schema("fresh1", options)
            alpha.join()
        finally:
            pre_migrate.disconnect(dispatch_uid="test.hold_alpha")
            post_migrate.disconnect(dispatch_uid="test.release_alpha")

        assert fresh1.status == Status.APPLIED
        assert [outcome.status for outcome in outcomes] == [Status.UP_TO_DATE]

    def test_fake_passes_through(self) -> None:
        migrate_fresh("fresh1", fake=True)

        assert recorded("fresh1") == ON_DISK
        assert relation("fresh1.testapp_note") is None

    def test_check_reports_schemas_with_unapplied_migrations(self) -> None:
        migrate_fresh("fresh1")
        run("manage_schemata")

        with pytest.raises(CommandError) as excinfo:
            migrate_fresh("fresh1", "fresh2", check_unapplied=True)

        assert str(excinfo.value) == "1 schema failed:\n  fresh2: unapplied migrations"
        assert recorded("fresh2") == set()

    def test_plan_passes_through_and_applies_nothing(self) -> None:
        run("manage_schemata")

        lines = migrate_fresh("fresh1", plan=True)

        assert "[fresh1] Planned operations:" in lines
        assert "[fresh1] testapp.0001_initial" in lines
        assert lines[-1] == "Summary: 1 done."
        assert recorded("fresh1") == set()

    def test_app_label_and_migration_name_pass_through(self) -> None:
        migrate_fresh("fresh1")

        lines = migrate_fresh("fresh1", app_label="seedapp", migration_name="0001")

        assert "[fresh1]   Unapplying seedapp.0002_seed... OK" in lines
        assert recorded("fresh1") == ON_DISK - {
            ("seedapp", "0002_seed"),
            ("seedapp", "0003_seed_owner"),
        }

    def test_a_failing_schema_does_not_stop_the_others(self) -> None:
        sabotage("fresh2")

        with pytest.raises(CommandError) as excinfo:
            migrate_fresh("fresh1", "fresh2", "fresh3")

        message = str(excinfo.value)
        assert message.startswith(
            '1 schema failed:\n  fresh2: ProgrammingError: relation "testapp_note" already exists'
        )
        assert excinfo.value.returncode == 1
        assert recorded("fresh1") == ON_DISK
        assert recorded("fresh3") == ON_DISK
        assert ("testapp", "0001_initial") not in recorded("fresh2")

    def test_failures_are_listed_in_the_output_and_the_summary(self) -> None:
        sabotage("fresh2")
        out = StringIO()

        with pytest.raises(CommandError):
            call_command(
                "migrate_schemata",
                "--schema",
                "fresh1",
                "--schema",
                "fresh2",
                interactive=False,
                stdout=out,
                stderr=out,
            )

        lines = out.getvalue().splitlines()
        assert any(
            line.startswith('[fresh2] FAILED: ProgrammingError: relation "testapp_note"')
            for line in lines
        )
        assert [line for line in lines if line.startswith("Progress:")][0].startswith(
            "Progress: 1/2 schemas, 0 failed, about "
        )
        assert lines[-1] == "Summary: 1 applied, 1 failed."

    def test_failfast_starts_no_schema_after_a_failure(self) -> None:
        sabotage("fresh1")
        out = StringIO()

        with pytest.raises(CommandError):
            call_command(
                "migrate_schemata",
                *[arg for n in FRESH for arg in ("--schema", n)],
                failfast=True,
                interactive=False,
                stdout=out,
                stderr=out,
            )

        assert out.getvalue().splitlines()[-1] == "Summary: 1 failed, 3 not started."
        assert recorded("fresh2") == set()

    def test_parallel_workers_migrate_every_schema_and_collect_failures(self) -> None:
        sabotage("fresh3")

        with pytest.raises(CommandError) as excinfo:
            migrate_fresh(*FRESH, parallel=2)

        assert str(excinfo.value).startswith("1 schema failed:\n  fresh3: ProgrammingError")
        for name in ("fresh1", "fresh2", "fresh4"):
            assert recorded(name) == ON_DISK
            assert seeds(name) == 1

    def test_parallel_output_is_prefixed_whole_lines(self) -> None:
        lines = migrate_fresh("fresh1", "fresh2", parallel=2, verbosity=2)

        schema_lines = [line for line in lines if line.startswith("[")]
        assert {line.split("]")[0] for line in schema_lines} == {"[fresh1", "[fresh2"}
        assert "[fresh1]   Applying testapp.0001_initial... OK" in applied(lines)
        assert "[fresh2]   Applying testapp.0001_initial... OK" in applied(lines)
        assert lines[-1] == "Summary: 2 applied."

    def test_an_interrupted_run_stops_between_schemas_and_a_rerun_finishes(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SCHEMATA_TEST_INTERRUPT", "fresh1")

        with pytest.raises(CommandError) as excinfo:
            migrate_fresh("fresh1", "fresh2", "fresh3")

        assert excinfo.value.returncode == 130
        assert str(excinfo.value) == (
            "Interrupted after 1 of 3 schemas; run the command again to finish."
        )
        assert recorded("fresh1") == ON_DISK
        assert recorded("fresh2") == set()

        monkeypatch.delenv("SCHEMATA_TEST_INTERRUPT")
        lines = migrate_fresh("fresh1", "fresh2", "fresh3")

        assert lines[-1] == "Summary: 2 applied, 1 up to date."
        assert all(recorded(name) == ON_DISK for name in ("fresh1", "fresh2", "fresh3"))

    def test_an_interrupted_parallel_run_lets_running_schemas_finish(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.setenv("SCHEMATA_TEST_INTERRUPT", "fresh1")
        monkeypatch.setenv("SCHEMATA_TEST_INTERRUPT_PARENT", "1")
        # fresh2, in the other worker, waits for the interrupt: else it (and fresh3, fresh4)
        # could finish before fresh1 reaches it on a busy machine.
        monkeypatch.setenv("SCHEMATA_TEST_INTERRUPT_GATE", str(tmp_path / "sent"))

        with pytest.raises(CommandError) as excinfo:
            migrate_fresh(*FRESH, parallel=2)

        assert excinfo.value.returncode == 130
        assert str(excinfo.value).startswith("Interrupted after ")
        # Every schema is either fully migrated or untouched.
        assert {frozenset(recorded(name)) for name in FRESH} <= {frozenset(ON_DISK), frozenset()}
        assert recorded("fresh4") == set()

        monkeypatch.delenv("SCHEMATA_TEST_INTERRUPT")
        monkeypatch.delenv("SCHEMATA_TEST_INTERRUPT_GATE")
        migrate_fresh(*FRESH, parallel=2)

        assert all(recorded(name) == ON_DISK for name in FRESH)

    def test_list_shows_each_schemas_migrations(self) -> None:
        lines = run(
            "migrate_schemata", "--list", "testapp", "--schema", "alpha", "--schema", "beta"
        )

        assert_testapp_migrations_of_alpha_and_beta(lines)

    def test_sync_schemata_runs_migrate_with_run_syncdb(self) -> None:
        lines = run("sync_schemata", "--schema", "fresh4", interactive=False, verbosity=2)

        assert "[fresh4] Operations to perform:" in lines
        assert any(
            line.startswith("[fresh4]   Synchronize unmigrated apps: messages, rest_framework")
            for line in lines
        )
        assert lines[-1] == "Summary: 1 applied."
        assert recorded("fresh4") == ON_DISK


@pytest.mark.django_db
class TestSelection:
    def test_exclude_leaves_schemas_out(self) -> None:
        lines = run(
            "migrate_schemata",
            "--list",
            "testapp",
            "--schema",
            "alpha",
            "--schema",
            "beta",
            "--exclude",
            "alpha",
        )

        assert lines[0] == "[beta] testapp"

    def test_unknown_schemas_are_an_error(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            run("migrate_schemata", "--schema", "nope", "--exclude", "nada")

        assert str(excinfo.value) == (
            "Unknown schemas: nope, nada. Schemas come from SCHEMATA_DOMAINS and the tenants "
            "registered at run time."
        )

    def test_a_django_release_that_changed_what_states_rely_on_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from schemata import statecache

        name = "django.db.migrations.migration.Migration.apply"
        monkeypatch.setitem(statecache.KNOWN, name, frozenset({"0" * 16}))
        statecache.check_django.cache_clear()
        try:
            with pytest.raises(ImproperlyConfigured) as excinfo:
                run("migrate_schemata", "--schema", "alpha")
        finally:
            statecache.check_django.cache_clear()

        assert str(excinfo.value).startswith(f"Django {django.get_version()} changed {name}, ")
        assert str(excinfo.value).endswith("upgrade django-schemata.")

    def test_help_does_not_offer_database(self) -> None:
        from schemata.management.commands.migrate_schemata import Command

        help_text = Command().create_parser("manage.py", "migrate_schemata").format_help()

        assert "--database" not in help_text
        assert "--public" in help_text

    def test_database_is_refused(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            run("migrate_schemata", database="alpha")

        assert str(excinfo.value) == (
            "migrate_schemata runs each schema on its own alias: choose schemas with "
            "--schema NAME instead of --database."
        )

    def test_parallel_must_be_positive(self) -> None:
        with pytest.raises(CommandError, match="--parallel must be at least 1."):
            run("migrate_schemata", "--schema", "alpha", "--parallel", "0")


@pytest.mark.django_db
class TestEachSchema:
    def test_runs_a_command_on_each_schemas_alias(self) -> None:
        lines = run(
            "each_schema", "--schema", "alpha", "--schema", "beta", "showmigrations", "testapp"
        )

        assert_testapp_migrations_of_alpha_and_beta(lines)

    def test_verbosity_2_shows_the_progress_after_each_schema(self) -> None:
        lines = run(
            "each_schema",
            "--schema",
            "alpha",
            "--schema",
            "beta",
            "showmigrations",
            "testapp",
            verbosity=2,
        )

        assert lines[:2] + lines[3:] == [
            "[alpha] testapp",
            "[alpha]  [X] 0001_initial",
            "[beta] testapp",
            "[beta]  [X] 0001_initial",
            "Progress: 2/2 schemas, 0 failed",
            "Summary: 2 done.",
        ]
        assert re.fullmatch(r"Progress: 1/2 schemas, 0 failed, about \d+s left", lines[2])

    def test_runs_a_command_without_database_option_with_the_schema_active(self) -> None:
        lines = run(
            "each_schema",
            "--schema",
            "t00",
            "--schema",
            "t01",
            "--parallel",
            "2",
            "whereami",
            "--verbosity",
            "0",
        )

        assert sorted(line for line in lines if line.startswith("[")) == [
            "[t00] t00: 0 notes",
            "[t01] t01: 0 notes",
        ]

    def test_an_explicit_database_is_left_to_the_command(self) -> None:
        lines = run(
            "each_schema",
            "--schema",
            "alpha",
            "showmigrations",
            "testapp",
            "--database",
            "default",
            verbosity=0,
        )

        assert lines == ["testapp", " [X] 0001_initial"]  # one schema: output as it comes

    def test_a_command_that_exits_with_status_0_counts_as_done(self) -> None:
        lines = run(
            "each_schema", "--schema", "alpha", "--schema", "beta", "whereami", "--exit", "0"
        )

        assert lines[:1] + lines[2:] == [
            "[alpha] alpha: 0 notes",
            "[beta] beta: 0 notes",
            "Summary: 2 done.",
        ]

    def test_a_command_that_exits_with_another_status_fails_with_it(self) -> None:
        out = StringIO()
        with pytest.raises(CommandError) as excinfo:
            call_command(
                "each_schema", "--schema", "alpha", "--schema", "beta", "whereami", "--exit", "3",
                stdout=out, stderr=out,
            )  # fmt: skip

        assert str(excinfo.value) == (
            "2 schemas failed:\n  alpha: exited with 3\n  beta: exited with 3"
        )
        assert "[alpha] FAILED: exited with 3" in out.getvalue().splitlines()

    def test_unknown_command(self) -> None:
        with pytest.raises(CommandError, match="Unknown command: 'nope'."):
            run("each_schema", "nope")

    def test_each_schema_cannot_run_itself(self) -> None:
        with pytest.raises(CommandError, match="each_schema cannot run itself."):
            run("each_schema", "each_schema", "whereami")


@pytest.mark.django_db(transaction=True)
class TestCommandsDoNotWalkSchemas:
    @pytest.fixture
    def opened(self) -> Iterator[list[str]]:
        aliases: list[str] = []

        def receiver(connection: Any, **kwargs: Any) -> None:
            aliases.append(connection.alias)

        connection_created.connect(receiver, dispatch_uid="test.opened")
        connections.close_all()
        yield aliases
        connection_created.disconnect(dispatch_uid="test.opened")

    def test_check_looks_at_the_base_alias_only(self, opened: list[str]) -> None:
        run("check", "--database", "default")

        assert list(connections) == ["default"]
        assert set(opened) <= {"default"}

    def test_makemigrations_check_opens_no_schema_connection(self, opened: list[str]) -> None:
        lines = run("makemigrations", "--check", "--dry-run")

        assert lines == ["No changes detected"]
        assert set(opened) <= {"default"}


SHARED = ["contenttypes", "auth", "sessions"]


@pytest.fixture
def shared(fresh: None) -> Iterator[None]:
    """Shared contenttypes, auth and sessions; fresh1 migrated as a tenant."""
    with override_settings(SCHEMATA_SHARED_APPS=SHARED):
        forget_schema_connections()
        migrate_fresh("fresh1")
        yield
        forget_schema_connections()


@pytest.mark.usefixtures("shared")
class TestCommandsChangeOnlyWhatTheyName:
    def test_a_target_with_schema_leaves_public_alone(self) -> None:
        public_before = recorded("public")

        lines = migrate_fresh("fresh1", "seedapp", "0001_initial", fake=True)

        assert not [line for line in lines if line.startswith("[public]")]
        assert "[fresh1]   Unapplying seedapp.0003_seed_owner... FAKED" in lines
        assert recorded("public") == public_before
        assert ("seedapp", "0002_seed") not in recorded("fresh1")

    def test_a_schema_run_leaves_public_alone(self) -> None:
        call_command("migrate", "seedapp", "0002", database="default", fake=True, verbosity=0)
        try:
            lines = migrate_fresh("fresh1")

            assert lines == ["Summary: 1 up to date."]
            assert ("seedapp", "0003_seed_owner") not in recorded("public")
        finally:
            call_command("migrate", "seedapp", database="default", fake=True, verbosity=0)

    def test_public_is_migrated_first_when_asked(self) -> None:
        call_command("migrate", "seedapp", "0002", database="default", fake=True, verbosity=0)

        lines = migrate_fresh("fresh1", "--public", fake=True)

        assert lines[0] == "[public] Operations to perform:"
        assert "[public]   Applying seedapp.0003_seed_owner... FAKED" in lines
        assert ("seedapp", "0003_seed_owner") in recorded("public")

    def test_a_failure_migrating_public_stops_the_run_before_any_schema(self) -> None:
        def fail(using: str, **kwargs: Any) -> None:
            if using == "default":
                raise RuntimeError("public is broken")

        call_command("migrate", "seedapp", "0002", database="default", fake=True, verbosity=0)
        pre_migrate.connect(fail, dispatch_uid="test.public_fails")
        try:
            with pytest.raises(CommandError) as excinfo:
                migrate_fresh("fresh2", "--public", verbosity=1)
        finally:
            pre_migrate.disconnect(dispatch_uid="test.public_fails")
            call_command("migrate", "seedapp", database="default", fake=True, verbosity=0)

        assert str(excinfo.value) == (
            "Migrating public failed, so no schema was migrated: RuntimeError: public is broken"
        )
        assert recorded("fresh2") == set()

    def test_a_schema_run_refuses_while_public_lacks_shared_migrations(self) -> None:
        call_command("migrate", "sessions", "zero", database="default", fake=True, verbosity=0)
        try:
            with pytest.raises(CommandError) as excinfo:
                migrate_fresh("fresh1")
        finally:
            call_command("migrate", "sessions", database="default", fake=True, verbosity=0)

        assert str(excinfo.value) == (
            "public lacks 2 migrations of shared apps (sessions.0001_initial, "
            "sessions.0002_remove_content_type_name_alter_session_expire_date): the schemas "
            "would record them as applied before public has them. Add --public to migrate "
            "public first, or run 'manage.py migrate'."
        ) or str(excinfo.value).startswith("public lacks ")

    def test_a_shared_apps_label_is_refused(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            migrate_fresh("fresh1", "auth", "0001_initial", fake=True)

        assert str(excinfo.value) == (
            "'auth' is a shared app: its tables are in public only. Migrate it with "
            "'manage.py migrate auth ...'; migrate_schemata then records its migrations in "
            "the schemas."
        )

    def test_a_target_with_public_is_refused(self) -> None:
        with pytest.raises(CommandError) as excinfo:
            migrate_fresh("fresh1", "--public", "seedapp", "0001_initial")

        assert str(excinfo.value) == (
            "An app_label or migration target applies to the schemas only: migrate public on "
            "its own ('manage.py migrate'), or use --public without one."
        )

    def test_an_unknown_app_label_is_refused_once(self) -> None:
        with pytest.raises(CommandError, match="^No installed app with label 'nope'.$"):
            migrate_fresh("fresh1", "nope")
