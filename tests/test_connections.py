from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from psycopg import IsolationLevel

import schemata
from schemata import SchemaUnavailable
from schemata.backend import schema_wrapper
from schemata.connections import SPARE_WRAPPERS, release_idle_connections
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db

SchemaWrapper = schema_wrapper(DatabaseWrapper)
T = TypeVar("T")


def in_thread(func: Callable[[], T]) -> T:
    """Run ``func`` in a new thread (so with its own connections) and return its result."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(func())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def test_a_missing_schema_fails_loudly_instead_of_falling_back() -> None:
    with schemata.override("ghost"), pytest.raises(SchemaUnavailable) as excinfo:
        Note.objects.count()

    assert str(excinfo.value) == (
        "The schema 'ghost' (database alias 'ghost') does not exist in database "
        f"'{connections['default'].settings_dict['NAME']}' or its role may not use it "
        "(current_schema() is None). Create it with 'python manage.py manage_schemata', or "
        "grant USAGE on it."
    )
    assert connections["ghost"].connection is None


def test_a_missing_schema_keeps_failing_on_every_attempt() -> None:
    for _ in range(2):
        with schemata.override("ghost"), pytest.raises(SchemaUnavailable):
            Note.objects.create(title="must not land anywhere")

    assert Note.objects.using("default").count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_role_without_usage_on_its_schema_is_refused(limited_role: str) -> None:
    # A connection of the base's role, idle on alpha in the pool: never the limited role's.
    with schemata.override("alpha"):
        Note.objects.count()
    connections.release_idle()  # type: ignore[attr-defined]
    settings = {**connections["alpha"].settings_dict, "USER": limited_role}
    wrapper = SchemaWrapper(settings, alias="alpha")

    with pytest.raises(SchemaUnavailable, match="current_schema\\(\\) is None"):
        wrapper.ensure_connection()
    assert wrapper.connection is None


def test_schema_connections_open_on_their_search_path_without_public() -> None:
    def search_path() -> tuple[str, str]:
        with connections["beta"].cursor() as cursor:
            cursor.execute("SELECT current_schema(), current_setting('search_path')")
            row: tuple[str, str] = cursor.fetchone()
            return row

    assert in_thread(search_path) == ("beta", "beta")


def test_close_all_closes_schema_connections_too() -> None:
    def scenario() -> tuple[bool, bool]:
        with schemata.override("t01"):
            Note.objects.count()
        opened = connections["t01"].connection is not None
        connections.close_all()
        return opened, connections["t01"].connection is None

    assert in_thread(scenario) == (True, True)


@pytest.fixture
def production_receiver_order() -> Iterator[None]:
    """Django's close_old_connections before ours, as outside the test client."""
    request_finished.disconnect(dispatch_uid="schemata.release")
    request_finished.connect(release_idle_connections, dispatch_uid="schemata.release")
    yield


@pytest.mark.usefixtures("production_receiver_order")
def test_per_request_bookkeeping_stays_flat_however_many_schemas_a_thread_served() -> None:
    def serve(names: list[str]) -> list[int]:
        sizes = []
        for name in names:
            request_started.send(sender=None)
            with schemata.override(name):
                Note.objects.count()
            request_finished.send(sender=None)
            sizes.append(len(connections.all(initialized_only=True)))
        return sizes

    sizes = in_thread(lambda: serve([f"t{i:02}" for i in range(64)]))

    # Between requests a thread keeps (parked) at most the pool's cap of schema connections,
    # the most recently used: the walk Django makes at each request stays that short.
    assert sizes[:10] == list(range(1, 11))
    assert set(sizes[10:]) == {10}


@pytest.mark.usefixtures("production_receiver_order")
def test_a_thread_serving_many_schemas_reuses_a_few_wrappers() -> None:
    def serve(names: list[str]) -> int:
        wrappers: set[int] = set()
        for name in names:
            request_started.send(sender=None)
            with schemata.override(name):
                Note.objects.count()
            wrappers.add(id(connections[name]))
            request_finished.send(sender=None)
        return len(wrappers)

    # A wrapper given back at the end of a request serves the next new schema: making one per
    # schema costs more than a request's own work.
    made = in_thread(lambda: serve([f"t{i:02}" for i in range(64)]))

    assert made <= 10 + SPARE_WRAPPERS + 1


def test_the_walk_lists_the_listed_and_schema_connections_this_thread_made() -> None:
    def scenario() -> tuple[list[str], list[str]]:
        before = [conn.alias for conn in connections.all(initialized_only=True)]
        connections["default"]
        connections["t04"]
        after = [conn.alias for conn in connections.all(initialized_only=True)]
        return before, after

    assert in_thread(scenario) == ([], ["default", "t04"])


def test_open_schema_connections_are_kept_between_requests() -> None:
    def scenario() -> bool:
        with schemata.override("t02"):
            Note.objects.count()
        request_finished.disconnect(close_old_connections)
        try:
            request_finished.send(sender=None)
        finally:
            request_finished.connect(close_old_connections)
        return connections["t02"] in connections.all(initialized_only=True)

    assert in_thread(scenario) is True


def test_connection_objects_in_use_are_not_forgotten() -> None:
    def scenario() -> bool:
        conn = connections["t03"]
        with conn.execute_wrapper(lambda execute, *args: execute(*args)):
            request_finished.send(sender=None)
            return connections["t03"] is conn

    assert in_thread(scenario) is True


def test_assigned_connection_objects_are_tracked() -> None:
    def scenario() -> bool:
        wrapper = SchemaWrapper(connections["t04"].settings_dict, alias="t04")
        del connections["t04"]
        connections["t04"] = wrapper
        return wrapper in connections.all()

    assert in_thread(scenario) is True


@override_settings(SCHEMATA_POOL={"max_size": 1})
def test_a_query_capture_on_a_schema_alias_outlives_its_connection_going_back() -> None:
    def scenario() -> list[str]:
        request_started.send(sender=None)
        with CaptureQueriesContext(connections["t12"]) as queries:
            Note.objects.using("t12").filter(title="before").count()
            # At the pool's cap of one: t12's connection is given back for t13's.
            Note.objects.using("t13").count()
            request_finished.send(sender=None)
            Note.objects.using("t12").filter(title="after").count()
        return [query["sql"] for query in queries]

    captured = in_thread(scenario)

    assert len(captured) == 2
    assert "'before'" in captured[0] and "'after'" in captured[1]


def test_a_database_engine_without_what_schema_aliases_need_is_refused() -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.db.backends.base.base import BaseDatabaseWrapper

    with pytest.raises(ImproperlyConfigured) as error:
        schema_wrapper(BaseDatabaseWrapper)

    assert str(error.value) == (
        "django.db.backends.base.base.BaseDatabaseWrapper has no pool: this Django release or "
        "database engine is not one django-schemata supports."
    )


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_takes_the_isolation_level_of_the_alias_it_serves() -> None:
    def level(wrapper: BaseDatabaseWrapper) -> str:
        wrapper.set_autocommit(False)  # psycopg begins the transaction at that level
        try:
            with wrapper.cursor() as cursor:
                cursor.execute("SHOW transaction_isolation")
                return str(cursor.fetchone()[0])
        finally:
            wrapper.rollback()
            wrapper.set_autocommit(True)

    def scenario() -> tuple[str, str, bool]:
        settings = connections["alpha"].settings_dict
        options = {**settings["OPTIONS"], "isolation_level": IsolationLevel.SERIALIZABLE}
        strict = SchemaWrapper({**settings, "OPTIONS": options}, alias="alpha")
        strict_level = level(strict)
        pid = strict.connection.info.backend_pid
        strict.close()
        # The same server connection, now for the alias's own wrapper: back to the default.
        connections.release_idle()  # type: ignore[attr-defined]
        plain = connections["alpha"]
        plain_level = level(plain)
        return strict_level, plain_level, plain.connection.info.backend_pid == pid

    assert in_thread(scenario) == ("serializable", "read committed", True)


def test_only_schema_aliases_are_tracked_per_thread() -> None:
    def scenario() -> list[str]:
        connections["default"] = connections["default"]
        connections["alpha"] = connections["alpha"]
        return list(connections._schema_aliases())  # type: ignore[attr-defined]

    assert in_thread(scenario) == ["alpha"]


@pytest.mark.django_db(transaction=True)
def test_discarding_schema_connections_spares_one_in_a_transaction() -> None:
    def scenario() -> tuple[bool, list[str]]:
        with schemata.override("beta"):
            Note.objects.count()
        with transaction.atomic(using="alpha"):
            with schemata.override("alpha"):
                Note.objects.count()
            connections.discard_schema_connections()  # type: ignore[attr-defined]
            tracked = list(connections._schema_aliases())  # type: ignore[attr-defined]
            alpha = connections["alpha"]
            return alpha.connection is not None and alpha.in_atomic_block, tracked

    assert in_thread(scenario) == (True, ["alpha"])


def test_installing_twice_keeps_the_handler_and_its_threads_state() -> None:
    from schemata.connections import install

    def scenario() -> bool:
        wrapper = connections["alpha"]
        install()
        return connections._schema_aliases().get("alpha") is wrapper  # type: ignore[attr-defined]

    assert in_thread(scenario)
