from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

import schemata
from schemata.context import keep_schema
from schemata.pool import get_pool
from tests.testapp.models import Note


def where() -> tuple[str | None, str]:
    """The active schema, and the alias the router sends a note query to."""
    schema = schemata.get_current_schema()
    return (schema.name if schema else None, Note.objects.all().db)


def in_thread(target: Callable[[], Any]) -> Any:
    """Run ``target`` in a new ``threading.Thread``; return what it returned."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()))
    thread.start()
    thread.join()
    return results[0]


def backend_pid() -> int:
    with schemata.get_connection().cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


def backend_alive(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(cursor.fetchone()[0])


def test_a_plain_thread_starts_with_no_schema() -> None:
    with schemata.override("alpha"):
        seen = in_thread(where)

    assert seen == (None, "default")


def test_a_thread_running_a_kept_function_has_the_callers_schema() -> None:
    with schemata.override("alpha"):
        seen = in_thread(keep_schema(where))

    assert seen == ("alpha", "alpha")


def test_an_executor_task_starts_with_no_schema() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor, schemata.override("beta"):
        seen = executor.submit(where).result()

    assert seen == (None, "default")


def test_an_executor_task_of_a_kept_function_has_the_callers_schema() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor, schemata.override("beta"):
        seen = executor.submit(keep_schema(where)).result()

    assert seen == ("beta", "beta")


def test_the_schema_is_the_one_active_when_the_function_was_kept() -> None:
    with schemata.override("alpha"):
        kept = keep_schema(where)

    with schemata.override("beta"):
        seen = in_thread(kept)

    assert seen == ("alpha", "alpha")


def test_one_kept_function_runs_in_many_threads_at_once() -> None:
    barrier = threading.Barrier(4)

    def meet(i: int) -> str | None:
        barrier.wait(timeout=5)
        return where()[0]

    with ThreadPoolExecutor(max_workers=4) as executor, schemata.override("alpha"):
        seen = list(executor.map(keep_schema(meet), range(4)))

    assert seen == ["alpha"] * 4


def test_a_schema_the_function_activates_stays_inside_its_call() -> None:
    def switch() -> str | None:
        found = where()[0]
        schemata.activate("beta")
        return found

    with schemata.override("alpha"):
        kept = keep_schema(switch)

        seen = [kept(), in_thread(kept), kept()]

        assert seen == ["alpha", "alpha", "alpha"]
        assert where()[0] == "alpha"


@pytest.mark.django_db
def test_the_connections_a_thread_opened_are_given_back_when_the_function_returns() -> None:
    pool = get_pool("default", 10, 30.0, move=True)

    with ThreadPoolExecutor(max_workers=2) as executor, schemata.override("alpha"):
        first = executor.submit(keep_schema(backend_pid)).result()
        in_use_between = pool.size - len(pool._idle)
        second = executor.submit(keep_schema(backend_pid)).result()

    assert in_use_between == 0
    assert second == first  # the same server connection, from the pool


@pytest.mark.django_db
def test_an_executor_thread_keeps_no_connection_object_after_the_function() -> None:
    def aliases() -> list[str]:
        return sorted(conn.alias for conn in connections.all())

    with ThreadPoolExecutor(max_workers=1) as executor:
        with schemata.override("alpha"):
            executor.submit(keep_schema(backend_pid)).result()

        assert executor.submit(aliases).result() == ["default"]


def test_connections_open_before_the_call_are_left_open(schemas: None) -> None:
    with schemata.override("alpha"):
        before = backend_pid()

        inside = keep_schema(backend_pid)()

        assert inside == before
        assert backend_pid() == before
        assert connections["alpha"].in_atomic_block
