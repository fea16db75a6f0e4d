"""No fallback to public: a schema's tables resolve in the schema or fail, never in public."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.utils import OperationalError, ProgrammingError
from django.test import Client, override_settings
from psycopg.errors import DeadlockDetected

import schemata
from schemata import SchemaUnavailable
from schemata.guard import build_guard
from tests.conftest import drop_fresh, forget_schema_connections
from tests.test_commands_migrate import run
from tests.test_connections import in_thread
from tests.testapp.models import Note

SHARED = ["contenttypes", "auth", "sessions"]
MISSING = (
    'schemata: the table "testapp_note" is not in the schema "fresh1" (dropped, or not '
    "migrated); it is never looked up in public instead"
)


def public_notes() -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT title FROM public.testapp_note ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def drop_fresh1(attempts: int = 5) -> None:
    # Under load the drop, which locks the schema's tables one after the other, can deadlock
    # with a request's insert, which locks a table and then the one its foreign key refers
    # to; PostgreSQL then cancels one of the two statements. When it is the drop: again.
    for attempt in range(attempts):
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("DROP SCHEMA fresh1 CASCADE")
            return
        except OperationalError as error:
            if not isinstance(error.__cause__, DeadlockDetected) or attempt == attempts - 1:
                raise


@pytest.fixture
def leftover(transactional_db: None) -> Iterator[None]:
    """Shared apps; fresh1 migrated as a tenant; public still holds testapp_note, with a row."""
    drop_fresh()
    with override_settings(SCHEMATA_SHARED_APPS=SHARED):
        run("migrate_schemata", "--schema", "fresh1", interactive=False)
        Note.objects.using("default").create(title="public's secret")
        with schemata.override("fresh1"):
            Note.objects.create(title="fresh1's note")
        yield
        forget_schema_connections()
    drop_fresh()
    Note.objects.using("default").all().delete()
    build_guard("default")


@pytest.mark.usefixtures("leftover")
class TestNoFallback:
    def test_an_open_connection_fails_on_every_statement_once_its_schema_is_dropped(
        self,
    ) -> None:
        with schemata.override("fresh1"):
            assert list(Note.objects.values_list("title", flat=True)) == ["fresh1's note"]
            drop_fresh1()

            for attempt in (
                lambda: list(Note.objects.all()),
                lambda: Note.objects.count(),
                lambda: Note.objects.filter(pk=1).exists(),
                lambda: Note.objects.create(title="lost"),
                lambda: Note.objects.filter(title="public's secret").update(title="x"),
                lambda: Note.objects.all().delete(),
            ):
                with pytest.raises(ProgrammingError) as excinfo:
                    attempt()
                assert str(excinfo.value).startswith(MISSING)

        assert public_notes() == ["public's secret"]

    def test_a_new_connection_to_a_dropped_schema_is_refused(self) -> None:
        drop_fresh1()

        with pytest.raises(SchemaUnavailable, match="The schema 'fresh1'"):
            in_thread(lambda: schemata.override("fresh1")(Note.objects.count)())

    def test_requests_under_load_never_see_or_write_public_when_the_schema_goes(self) -> None:
        responses: list[tuple[float, int, bytes]] = []
        stop = threading.Event()

        def serve() -> None:
            client = Client(raise_request_exception=False, HTTP_HOST="fresh1.example.com")
            try:
                # The test client leaves connections open between requests, as persistent
                # connections do.
                for i in range(400):
                    if stop.is_set():
                        break
                    started = time.monotonic()
                    if i % 2:
                        response = client.get("/")
                    else:
                        response = client.get("/notes/", {"title": f"written {i}"})
                    responses.append((started, response.status_code, response.content))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=serve) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(responses) < 40:
            time.sleep(0.005)
        drop_fresh1()
        dropped = time.monotonic()
        while len(responses) < 200 and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        stop.set()
        for thread in threads:
            thread.join()

        after = [(status, body) for started, status, body in responses if started > dropped]
        assert len(after) > 20
        assert all(status == 500 for status, _ in after)
        assert not any(b"public's secret" in body for _, _, body in responses)
        assert public_notes() == ["public's secret"]


class TestGuardSchema:
    @pytest.mark.usefixtures("leftover")
    def test_a_connection_is_refused_while_the_guard_is_missing(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP SCHEMA schemata_guard CASCADE")

        with pytest.raises(SchemaUnavailable) as excinfo:
            in_thread(lambda: schemata.override("fresh1")(Note.objects.count)())

        assert str(excinfo.value) == (
            "The schema 'schemata_guard' is missing from database "
            f"'{connections['default'].settings_dict['NAME']}': without it, a table missing "
            "from 'fresh1' would be read from public. Run 'python manage.py migrate' (it "
            "rebuilds 'schemata_guard' when SCHEMATA_SHARED_APPS is set)."
        )

    @pytest.mark.usefixtures("leftover")
    def test_the_guard_follows_the_shared_apps_and_is_left_alone_when_current(self) -> None:
        assert "seedapp_seed" in guarded()
        oid = guard_oid()

        build_guard("default")
        assert guard_oid() == oid

        with override_settings(SCHEMATA_SHARED_APPS=[*SHARED, "seedapp"]):
            build_guard("default")
            assert "seedapp_seed" not in guarded()
            assert "testapp_note" in guarded()

    @pytest.mark.usefixtures("leftover")
    def test_two_tenant_models_on_one_table_get_one_view(self) -> None:
        from django.apps import apps
        from django.db import models

        class NoteAgain(models.Model):
            title = models.CharField(max_length=200)

            class Meta:
                app_label = "testapp"
                db_table = "testapp_note"

        try:
            build_guard("default")
            views = guarded()
        finally:
            del apps.all_models["testapp"]["noteagain"]
            apps.clear_cache()

        assert "testapp_note" in views

    @pytest.mark.django_db(transaction=True)
    def test_without_shared_apps_there_is_no_guard(self) -> None:
        build_guard("default")

        assert guard_oid() is None


def guarded() -> set[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'schemata_guard'::regnamespace"
        )
        return {row[0] for row in cursor.fetchall()}


def guard_oid() -> Any:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT to_regnamespace('schemata_guard')::oid")
        return cursor.fetchone()[0]
