"""A moved connection's search path: carried by its next statement, checked before it runs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, OperationalError, ProgrammingError, connections, transaction
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from psycopg import pq, sql

import schemata
from schemata import SchemaUnavailable
from schemata.backend import schema_wrapper
from schemata.paths import path_cursor, pending
from schemata.pool import SchemaPool, get_pool
from tests.testapp.models import Note

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("one_connection"),
]


@pytest.fixture
def one_connection(light_schemas: tuple[str, ...]) -> Iterator[None]:
    """A pool of one connection, left on t00: every other schema moves it."""
    with override_settings(SCHEMATA_POOL={"max_size": 1, "timeout": 5}):
        with connections["default"].cursor() as cursor:
            for name in ("t00", "t01"):
                cursor.execute(f"INSERT INTO {name}.testapp_note (title) VALUES (%s)", [name])
        with schemata.override("t00"):
            assert list(Note.objects.values_list("title", flat=True)) == ["t00"]
        connections.release_idle()  # type: ignore[attr-defined]
        yield
    connections.close_all()


SchemaWrapper = schema_wrapper(DatabaseWrapper)


def pool() -> SchemaPool:
    return get_pool("default", 1, 5, move=True)


def raw(name: str) -> psycopg.Connection[Any]:
    """The connection handed out to ``name``'s alias, with its move still pending."""
    conn = connections[name]
    conn.ensure_connection()
    assert pending(conn.connection) is not None
    return conn.connection  # type: ignore[no-any-return]


def current_schema(connection: psycopg.Connection[Any]) -> str:
    # psycopg's own cursor class: it carries no move.
    row = psycopg.ClientCursor(connection).execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


@contextmanager
def sent_messages(connection: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """The names of the protocol messages sent to the server in the block (libpq's trace)."""
    sent: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        connection.pgconn.trace(trace.fileno())
        connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield sent
        finally:
            connection.pgconn.untrace()
        trace.seek(0)
        sent += [line.split("\t")[2] for line in trace if line.startswith("F\t")]


def test_a_moved_connection_runs_its_next_query_on_the_new_schema_in_the_same_round_trip() -> None:
    connection = raw("t01")

    with sent_messages(connection) as sent, schemata.override("t01"):
        titles = list(Note.objects.values_list("title", flat=True))

    assert titles == ["t01"]
    assert sent == ["Query"]
    assert pending(connection) is None
    assert current_schema(connection) == "t01"
    assert (pool().stats.moved, pool().stats.opened) == (1, 1)
    with connections["t01"].cursor() as cursor:
        cursor.execute("SELECT current_setting('application_name')")
        assert cursor.fetchone()[0] == "schemata:t01"


def test_django_logs_the_query_without_the_move() -> None:
    raw("t01")

    with CaptureQueriesContext(connections["t01"]) as captured, schemata.override("t01"):
        Note.objects.filter(title="t01").count()

    assert len(captured) == 1
    assert captured[0]["sql"].startswith('SELECT COUNT(*) AS "__count" FROM "testapp_note"')


def test_django_logs_a_failed_query_without_the_move() -> None:
    raw("t01")

    with (
        CaptureQueriesContext(connections["t01"]) as captured,
        schemata.override("t01"),
        pytest.raises(IntegrityError),
    ):
        Note.objects.create(title=None)  # type: ignore[misc]  # NOT NULL fails

    assert captured[0]["sql"].startswith('INSERT INTO "testapp_note"')


def test_a_statement_that_fails_before_it_is_sent_leaves_the_move_pending() -> None:
    connection = raw("t01")

    with pytest.raises(psycopg.ProgrammingError, match="cannot adapt"):
        connection.execute("SELECT %s", [object()])

    assert pending(connection) is not None
    assert connection.execute("SELECT title FROM testapp_note").fetchall() == [("t01",)]


def test_a_move_undone_by_a_failed_statement_is_carried_again() -> None:
    connection = raw("t01")

    with schemata.override("t01"), pytest.raises(IntegrityError):
        Note.objects.create(title=None)  # type: ignore[misc]  # NOT NULL fails

    assert pending(connection) is not None
    assert current_schema(connection) == "t00"  # rolled back with the insert
    with schemata.override("t01"):
        assert list(Note.objects.values_list("title", flat=True)) == ["t01"]
    assert pending(connection) is None


def test_a_move_inside_a_transaction_rolled_back_is_carried_again() -> None:
    connection = raw("t01")

    with connection.transaction(force_rollback=True):
        connection.execute("SELECT 1")
        assert current_schema(connection) == "t01"

    assert current_schema(connection) == "t00"
    assert connection.execute("SELECT current_schema()").fetchone() == ("t01",)
    assert pending(connection) is None


def test_a_missing_schema_fails_the_statement_before_it_runs() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS ghost CASCADE")
    raw("ghost")

    with schemata.override("ghost"), pytest.raises(SchemaUnavailable, match="The schema 'ghost'"):
        Note.objects.create(title="lost")

    with schemata.override("t00"):
        assert list(Note.objects.values_list("title", flat=True)) == ["t00"]


def test_a_missing_schema_in_a_transaction_begun_with_psycopg_is_named() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS ghost CASCADE")
    connection = raw("ghost")

    # psycopg's BEGIN carries no move: the check fails inside the transaction, where nothing
    # more can run to read the path, so the error is told from the server's message.
    with (
        pytest.raises(SchemaUnavailable, match="The schema 'ghost'"),
        connection.transaction(),
    ):
        connection.execute("SELECT 1")

    assert pending(connection) is not None


def test_a_schema_the_role_may_not_use_resolves_none_of_its_tables(limited_role: str) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA t00 TO {limited_role}")
        cursor.execute(f"GRANT SELECT ON t00.testapp_note TO {limited_role}")
    wrappers = [
        SchemaWrapper({**connections[name].settings_dict, "USER": limited_role}, name)
        for name in ("t00", "t01")
    ]
    try:
        with wrappers[0].cursor() as cursor:  # opened on t00, and checked then
            cursor.execute("SELECT title FROM testapp_note")
            assert cursor.fetchall() == [("t00",)]
        wrappers[0].close()
        wrappers[1].ensure_connection()  # the same connection, its move to t01 pending

        # The carried check finds t01; the path then skips it, and the table resolves nowhere.
        with (
            pytest.raises(ProgrammingError, match='"testapp_note" does not exist'),
            wrappers[1].cursor() as cursor,
        ):
            cursor.execute("SELECT title FROM testapp_note")
        # A move of its own (a transaction's first statement) reads the path and names the
        # cause.
        wrappers[1].set_autocommit(False)
        with (
            pytest.raises(SchemaUnavailable, match="The schema 't01'.*may not use it"),
            wrappers[1].cursor() as cursor,
        ):
            cursor.execute("SELECT 1")
    finally:
        for wrapper in wrappers:
            wrapper.close()


def test_the_cursor_shows_the_result_of_its_own_statement_only() -> None:
    connection = raw("t01")
    cursor = connection.cursor()

    cursor.execute("UPDATE testapp_note SET title = title")

    assert cursor.rowcount == 1
    assert cursor.statusmessage == "UPDATE 1"
    assert cursor.nextset() is None


def test_a_failed_transaction_can_still_roll_back_to_its_savepoint() -> None:
    connection = raw("t01")

    with connection.transaction():
        connection.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.DivisionByZero):
            connection.execute("SELECT 1 / 0")
        connection.execute("ROLLBACK TO SAVEPOINT s")
        assert connection.execute("SELECT current_schema()").fetchone() == ("t01",)


def test_a_transaction_is_moved_before_it_begins() -> None:
    connection = raw("t01")

    with schemata.override("t01"), transaction.atomic(using="t01"):
        Note.objects.create(title="kept")
        transaction.set_rollback(True, using="t01")

    assert pending(connection) is None
    assert current_schema(connection) == "t01"


def test_statements_that_cannot_run_in_a_transaction_block_are_moved_first() -> None:
    connection = raw("t01")

    with connections["t01"].cursor() as cursor:
        cursor.execute("VACUUM testapp_note")
        cursor.execute("CREATE INDEX CONCURRENTLY note_title ON testapp_note (title)")
        cursor.execute("DROP INDEX CONCURRENTLY note_title")

    assert pending(connection) is None
    assert current_schema(connection) == "t01"


def t01_titles() -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT title FROM t01.testapp_note ORDER BY title")
        return [row[0] for row in cursor.fetchall()]


def test_executemany_is_moved_first() -> None:
    raw("t01")

    with connections["t01"].cursor() as cursor:
        cursor.executemany("INSERT INTO testapp_note (title) VALUES (%s)", [("a",), ("b",)])

    assert t01_titles() == ["a", "b", "t01"]


def test_copy_is_moved_first() -> None:
    raw("t01")

    with (
        connections["t01"].cursor() as cursor,
        cursor.copy("COPY testapp_note (title) FROM STDIN") as copy,
    ):
        copy.write_row(["copied"])

    assert t01_titles() == ["copied", "t01"]


def test_a_named_cursor_of_the_orm_is_moved_first() -> None:
    raw("t01")

    with schemata.override("t01"):
        titles = list(Note.objects.values_list("title", flat=True).iterator(chunk_size=10))

    assert titles == ["t01"]


def test_a_string_of_several_statements_is_moved_first() -> None:
    connection = raw("t01")

    with connections["t01"].cursor() as cursor:
        cursor.execute("SELECT 1; ROLLBACK")

    assert pending(connection) is None
    assert current_schema(connection) == "t01"


def test_a_named_cursor_opened_on_the_psycopg_connection_is_moved_first() -> None:
    connection = raw("t01")

    with connection.transaction(), connection.cursor(name="notes") as cursor:
        cursor.execute("SELECT title FROM testapp_note")
        assert cursor.fetchall() == [("t01",)]


def test_a_statement_sent_with_psycopg_directly_carries_the_move() -> None:
    connection = raw("t01")

    rows = connection.execute("SELECT title FROM testapp_note").fetchall()

    assert rows == [("t01",)]


def test_a_statement_with_parameters_keeps_its_percent_escapes() -> None:
    connection = raw("t01")

    row = connection.execute("SELECT %s || '%%' || current_schema()", ["x"]).fetchone()

    assert row == ("x%t01",)


def test_a_stream_is_moved_first() -> None:
    connection = raw("t01")

    rows = list(connection.cursor().stream("SELECT title FROM testapp_note"))

    assert rows == [("t01",)]


def test_a_pipeline_is_moved_first() -> None:
    connection = raw("t01")

    with connection.pipeline():
        cursor = connection.execute("SELECT title FROM testapp_note")

    assert cursor.fetchall() == [("t01",)]


def test_a_move_in_a_pipeline_that_failed_is_carried_again() -> None:
    connection = raw("t01")

    with pytest.raises(psycopg.errors.NotNullViolation), connection.pipeline():
        connection.execute("INSERT INTO testapp_note (title) VALUES ('rolled back')")
        connection.execute("INSERT INTO testapp_note (title) VALUES (NULL)")

    assert pending(connection) is not None
    assert current_schema(connection) == "t00"  # the pipeline's statements were rolled back
    assert connection.execute("SELECT title FROM testapp_note").fetchall() == [("t01",)]


def test_a_connection_that_breaks_during_a_move_raises_its_own_error() -> None:
    connection = raw("t01")
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [connection.info.backend_pid])

    with (
        pytest.raises(OperationalError, match="terminating connection due to administrator"),
        schemata.override("t01"),
        transaction.atomic(using="t01"),
    ):
        Note.objects.count()


def test_composed_sql_and_a_leading_comment_are_moved_first() -> None:
    connection = raw("t01")
    composed = sql.SQL("SELECT title FROM {}").format(sql.Identifier("testapp_note"))

    assert connection.execute(composed).fetchall() == [("t01",)]
    connections.release_idle()  # type: ignore[attr-defined]
    connection = raw("t00")
    assert connection.execute("/* t00 */ SELECT title FROM testapp_note").fetchall() == [("t00",)]


def test_a_cursor_that_binds_on_the_server_is_moved_first() -> None:
    connection = raw("t01")

    cursor = path_cursor(psycopg.Cursor)(connection)

    assert cursor.execute("SELECT title FROM testapp_note").fetchall() == [("t01",)]


def test_an_error_of_the_statement_itself_is_raised_as_it_is() -> None:
    connection = raw("t01")

    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='"x"'):
        connection.execute("SELECT 'x'::int")

    assert pending(connection) is not None
    assert current_schema(connection) == "t00"


def test_a_move_made_for_a_copy_inside_a_transaction_is_carried_again_after_it() -> None:
    connection = raw("t01")

    with (
        connection.transaction(force_rollback=True),
        connection.cursor().copy("COPY testapp_note (title) FROM STDIN") as copy,
    ):
        copy.write_row(["gone"])

    assert pending(connection) is not None
    assert connection.execute("SELECT title FROM testapp_note").fetchall() == [("t01",)]


def test_a_psycopg_release_without_the_send_hook_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="_execute_send"):
        path_cursor(type("Cursor", (), {}))
