"""The pool under the schema aliases: bounded, reused across schemas, verified, self-healing."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.core.signals import request_finished, request_started
from django.db import connections
from django.test import Client, override_settings

import schemata
from schemata import SchemaUnavailable
from schemata.exceptions import ConnectionPoolExhausted
from schemata.pool import SchemaPool, get_pool
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def pool() -> SchemaPool:
    from schemata.conf import conf

    settings = conf.POOL
    return get_pool("default", settings.max_size, settings.timeout, move=True)


def backend_pid(name: str) -> int:
    with schemata.override(name), schemata.get_connection().cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def end_request() -> None:
    """Give this thread's schema connections back to the pool (none kept parked)."""
    connections.release_idle()  # type: ignore[attr-defined]


def server_connections() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'schemata:%%'"
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def fresh_pool() -> Iterator[None]:
    """Start and end with no schema connection and no pool in this process."""
    with override_settings(SCHEMATA_POOL={"max_size": 3, "timeout": 5}):
        yield
    connections.close_all()


@pytest.fixture
def marked(light_schemas: tuple[str, ...]) -> tuple[str, ...]:
    """One row per light schema whose title is the schema's name."""
    with connections["default"].cursor() as cursor:
        for name in light_schemas:
            cursor.execute(f"INSERT INTO {name}.testapp_note (title) VALUES (%s)", [name])
    return light_schemas


@pytest.mark.usefixtures("fresh_pool")
class TestReuse:
    def test_a_connection_on_the_wanted_schema_is_handed_out_with_no_statement(self) -> None:
        first = backend_pid("alpha")
        end_request()
        before = (pool().stats.kept, pool().stats.moved, pool().stats.opened)

        second = backend_pid("alpha")

        assert second == first
        assert (pool().stats.kept, pool().stats.moved, pool().stats.opened) == (
            before[0] + 1,
            before[1],
            before[2],
        )

    def test_under_the_cap_each_schema_keeps_a_connection_of_its_own(self) -> None:
        pids = [backend_pid(name) for name in ("alpha", "beta")]
        end_request()

        again = [backend_pid(name) for name in ("alpha", "beta")]

        assert again == pids
        assert pids[0] != pids[1]
        assert (pool().stats.opened, pool().stats.moved, pool().stats.kept) == (2, 0, 2)

    @override_settings(SCHEMATA_POOL={"max_size": 1, "timeout": 5})
    def test_at_the_cap_an_idle_connection_of_another_schema_is_moved(self) -> None:
        first = backend_pid("alpha")
        end_request()

        second = backend_pid("beta")

        assert second == first
        assert (pool().stats.moved, pool().stats.opened) == (1, 1)
        with schemata.override("beta"):
            assert Note.objects.count() == 0
        with connections["beta"].cursor() as cursor:
            cursor.execute("SELECT current_setting('application_name')")
            assert cursor.fetchone()[0] == "schemata:beta"

    @override_settings(SCHEMATA_POOL={"max_size": 1, "timeout": 5})
    def test_requests_for_several_tenants_share_one_server_connection(self) -> None:
        client = Client()

        bodies = [
            client.get("/", HTTP_HOST=f"{name}.example.com").json()["schema"]
            for name in ("alpha", "beta", "alpha", "beta")
        ]

        assert bodies == ["alpha", "beta", "alpha", "beta"]
        assert pool().size == 1

    def test_moving_onto_a_missing_schema_fails_and_keeps_the_connection(self) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS ghost CASCADE")
        backend_pid("alpha")
        end_request()

        with pytest.raises(SchemaUnavailable, match="The schema 'ghost'"):
            backend_pid("ghost")

        assert pool().size == 1
        assert backend_pid("beta") > 0  # moved again, from an unknown path
        with schemata.override("beta"):
            assert Note.objects.count() == 0


@pytest.mark.usefixtures("fresh_pool")
class TestBounds:
    def test_many_threads_and_schemas_never_exceed_the_cap_nor_cross_schemas(
        self, marked: tuple[str, ...]
    ) -> None:
        errors: list[BaseException] = []
        peak = 0
        done = threading.Event()

        def serve(seed: int) -> None:
            chooser = random.Random(seed)
            try:
                for _ in range(60):
                    name = chooser.choice(marked)
                    request_started.send(sender=None)
                    with schemata.override(name):
                        titles = list(Note.objects.values_list("title", flat=True))
                    request_finished.send(sender=None)
                    assert titles == [name], (name, titles)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        others = server_connections()  # other processes' (a Celery worker's, say)
        threads = [threading.Thread(target=serve, args=(seed,)) for seed in range(12)]
        for thread in threads:
            thread.start()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, server_connections() - others)
                time.sleep(0.005)
            connections["default"].close()

        sampler = threading.Thread(target=sample)
        sampler.start()
        for thread in threads:
            thread.join()
        done.set()
        sampler.join()

        assert errors == []
        assert 1 <= peak <= 3
        assert pool().size <= 3
        assert pool().stats.moved > 100

    @override_settings(SCHEMATA_POOL={"max_size": 3, "timeout": 0.2})
    def test_past_the_cap_a_caller_waits_then_gets_an_error_naming_the_setting(self) -> None:
        held = threading.Barrier(4)
        release = threading.Event()

        def hold(name: str) -> None:
            with schemata.override(name), schemata.atomic():
                Note.objects.count()
                held.wait(5)
                release.wait(10)
            connections.close_all()

        holders = [threading.Thread(target=hold, args=(f"t0{i}",)) for i in range(3)]
        for thread in holders:
            thread.start()
        held.wait(5)
        started = time.monotonic()
        try:
            with pytest.raises(ConnectionPoolExhausted) as excinfo:
                backend_pid("beta")
            waited = time.monotonic() - started
        finally:
            release.set()
            for thread in holders:
                thread.join()

        assert str(excinfo.value) == (
            "No connection to database alias 'default' came free within 0.2s: this process "
            "holds all SCHEMATA_POOL['max_size'] = 3 of them, in use. Raise it (within the "
            "server's max_connections) or SCHEMATA_POOL['timeout'], or release connections "
            "sooner."
        )
        assert waited >= 0.2

    def test_a_loop_over_schemas_outside_requests_gives_its_own_idle_connections_back(
        self,
    ) -> None:
        names = [f"t{i:02}" for i in range(20)]

        pids = {name: backend_pid(name) for name in names}

        assert len(set(pids.values())) <= 3
        assert pool().size <= 3

    def test_a_waiting_caller_gets_the_connection_given_back(self) -> None:
        got: list[int] = []

        def hold_then_give_back(name: str) -> None:
            got.append(backend_pid(name))
            time.sleep(0.2)
            end_request()  # gives this thread's connection back

        for name in ("t00", "t01", "t02"):
            threading.Thread(target=hold_then_give_back, args=(name,)).start()
        time.sleep(0.1)

        assert backend_pid("alpha") in got
        assert pool().stats.waited >= 1


@pytest.mark.usefixtures("fresh_pool")
class TestHealing:
    def test_a_connection_the_server_ended_while_idle_is_not_handed_out(self) -> None:
        first = backend_pid("alpha")
        end_request()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        time.sleep(0.1)

        second = backend_pid("alpha")

        assert second != first
        assert pool().stats.discarded == 1
        assert pool().stats.kept == 0  # found dead: not counted as handed out

    def test_a_dead_connection_is_not_moved_either(self) -> None:
        first = backend_pid("alpha")
        end_request()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
        time.sleep(0.1)

        assert backend_pid("beta") != first

    @override_settings()
    def test_health_checks_ping_a_kept_connection(self) -> None:
        from django.conf import settings

        databases = settings.DATABASES
        first = backend_pid("alpha")
        end_request()
        dict.__getitem__(databases, "default")["CONN_HEALTH_CHECKS"] = True
        try:
            connections.discard_schema_connections()  # type: ignore[attr-defined]
            assert backend_pid("alpha") == first
        finally:
            dict.__getitem__(databases, "default")["CONN_HEALTH_CHECKS"] = False

    def test_a_broken_connection_given_back_is_discarded(self) -> None:
        with schemata.override("alpha"):
            Note.objects.count()
            raw = connections["alpha"].connection
            pid = raw.info.backend_pid
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.1)
        with pytest.raises(Exception), schemata.override("alpha"):  # noqa: B017
            Note.objects.count()

        end_request()

        assert pool().size == 0
        assert backend_pid("alpha") != pid

    def test_a_forked_child_leaves_the_parents_connections_alone(self) -> None:
        first = backend_pid("alpha")
        end_request()

        child = os.fork()
        if child == 0:
            from schemata import pool as module

            os._exit(0 if not module._pools else 1)
        _, status = os.waitpid(child, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert backend_pid("alpha") == first


@pytest.mark.usefixtures("fresh_pool")
class TestSettings:
    def test_a_changed_setting_makes_a_new_pool(self) -> None:
        backend_pid("alpha")
        end_request()

        with override_settings(SCHEMATA_POOL={"max_size": 7}):
            assert pool().max_size == 7
            assert pool().size == 0

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (
                {"size": 3},
                "SCHEMATA_POOL has unknown keys ['size']: use 'max_size' and 'timeout'.",
            ),
            ({"max_size": 0}, "SCHEMATA_POOL['max_size'] must be at least 1"),
        ],
    )
    def test_bad_pool_settings_are_refused(self, value: dict[str, Any], message: str) -> None:
        from django.core.exceptions import ImproperlyConfigured

        with override_settings(SCHEMATA_POOL=value), pytest.raises(ImproperlyConfigured) as info:
            backend_pid("alpha")

        assert str(info.value).startswith(message)

    def test_a_cap_the_server_cannot_serve_is_warned_about(self) -> None:
        with (
            override_settings(SCHEMATA_POOL={"max_size": 5000}),
            pytest.raises(SystemCheckError) as excinfo,
        ):
            call_command("check", "--fail-level", "WARNING", databases=["default"])

        assert "(schemata.W005) SCHEMATA_POOL['max_size'] = 5000 is more than" in str(
            excinfo.value
        )


def request(name: str) -> int:
    """One request's worth of work on schema ``name``: its backend's pid."""
    request_started.send(sender=None)
    try:
        return backend_pid(name)
    finally:
        request_finished.send(sender=None)


@pytest.mark.usefixtures("fresh_pool")
class TestParking:
    def test_the_next_request_on_the_schema_reuses_the_parked_connection(self) -> None:
        first = request("alpha")
        opened, kept = pool().stats.opened, pool().stats.kept

        second = request("alpha")

        assert second == first
        assert (pool().stats.opened, pool().stats.kept) == (opened, kept)
        assert pool().stats.parked >= 1

    def test_a_parked_connection_survives_conn_max_age_0(self) -> None:
        assert connections["default"].settings_dict["CONN_MAX_AGE"] == 0

        pids = {request("alpha") for _ in range(3)}

        assert len(pids) == 1

    @override_settings(SCHEMATA_POOL={"max_size": 1, "timeout": 5})
    def test_a_thread_at_the_cap_takes_another_threads_parked_connection(self) -> None:
        pid = request("alpha")  # parked by this thread

        seen: list[int] = []

        def other() -> None:  # a request in another thread, which parks its connection too
            request_started.send(sender=None)
            seen.append(backend_pid("beta"))
            with schemata.override("beta"):
                seen.append(Note.objects.count())
            request_finished.send(sender=None)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        mine = request("alpha")

        assert seen == [pid, 0]  # taken, and moved to beta
        assert mine == pid  # and back, once the other thread gave it up
        assert pool().stats.taken >= 1
        with schemata.override("alpha"), connections["alpha"].cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            assert cursor.fetchone()[0] == "alpha"

    def test_a_parked_connection_the_server_ended_is_not_used(self) -> None:
        pid = request("alpha")
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.1)

        assert request("alpha") != pid
        assert pool().stats.parked == 0  # found dead: not counted as claimed back

    def test_closing_every_connection_closes_the_parked_ones(self) -> None:
        pid = request("alpha")

        connections.close_all()

        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            assert cursor.fetchone()[0] == 0


@override_settings(SCHEMATA_POOL={"max_size": 2, "timeout": 5})
@pytest.mark.usefixtures("fresh_pool")
def test_at_the_cap_a_parked_connection_on_the_schema_is_taken_before_any_other() -> None:
    def park(name: str) -> int:
        pid: list[int] = []
        thread = threading.Thread(target=lambda: pid.append(request(name)))
        thread.start()
        thread.join()
        return pid[0]

    _, on_alpha = park("beta"), park("alpha")  # two threads park one each, beta's first
    moved = pool().stats.moved

    assert request("alpha") == on_alpha
    assert pool().stats.moved == moved


def titles(name: str) -> list[str]:
    with schemata.override(name):
        return list(Note.objects.values_list("title", flat=True))


def in_thread(work: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def served(name: str) -> tuple[int, list[str]]:
    """A request on schema ``name``: its backend's pid and the titles it read."""
    request_started.send(sender=None)
    try:
        return backend_pid(name), titles(name)
    finally:
        request_finished.send(sender=None)


@pytest.fixture
def capped(fresh_pool: None, marked: tuple[str, ...]) -> Iterator[None]:
    """A pool of one connection; one row per light schema, titled with its name."""
    with override_settings(SCHEMATA_POOL={"max_size": 1, "timeout": 5}):
        yield
    connections.close_all()


@pytest.mark.usefixtures("capped")
class TestHandOver:
    """A thread at the cap moves the connection it parked itself, with its wrapper."""

    def test_the_parked_wrapper_serves_the_next_schema_with_its_connection(self) -> None:
        pid, _ = served("t00")
        wrapper = id(connections["t00"])
        stats = dict(vars(pool().stats))

        assert served("t01") == (pid, ["t01"])

        assert id(connections["t01"]) == wrapper
        assert "t00" not in connections._schema_aliases()  # type: ignore[attr-defined]
        after = vars(pool().stats)
        assert after["moved"] == stats["moved"] + 1
        # Neither given back nor handed out by the pool: no claim-back, no new connection.
        assert (after["parked"], after["opened"], after["kept"]) == (
            stats["parked"],
            stats["opened"],
            stats["kept"],
        )

    def test_a_wrapper_somebody_holds_keeps_serving_its_schema(self) -> None:
        pid, _ = served("t00")
        held = connections["t00"]

        assert served("t01") == (pid, ["t01"])

        assert held.alias == "t00"
        assert connections["t01"] is not held
        assert titles("t00") == ["t00"]

    def test_a_connection_handed_over_but_never_used_goes_back_on_its_schema(self) -> None:
        pid, _ = served("t00")
        request_started.send(sender=None)
        connections["t01"]  # handed the parked connection, never used
        request_finished.send(sender=None)
        kept = pool().stats.kept

        assert served("t00") == (pid, ["t00"])
        assert pool().stats.kept == kept + 1  # still on t00: no move

    def test_a_handed_over_connection_another_thread_took_meanwhile_is_left_to_it(self) -> None:
        pid, _ = served("t00")
        request_started.send(sender=None)
        connections["t01"]  # handed the parked connection, never used, parked again
        request_finished.send(sender=None)
        assert in_thread(lambda: served("t02")) == (pid, ["t02"])  # taken at the cap

        assert served("t01") == (pid, ["t01"])
        assert pool().size == 1

    def test_a_connection_the_server_ended_while_parked_is_replaced(self) -> None:
        pid, _ = served("t00")
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        time.sleep(0.1)

        other, rows = served("t01")

        assert other != pid
        assert rows == ["t01"]
        assert pool().size == 1
        assert pool().stats.moved == 0  # found dead: not counted as moved

    def test_a_connection_another_thread_took_is_left_to_it(self) -> None:
        pid, _ = served("t00")
        assert in_thread(lambda: served("t01")) == (pid, ["t01"])  # taken at the cap

        assert served("t02") == (pid, ["t02"])
        assert pool().size == 1

    @override_settings(SCHEMATA_POOL={"max_size": 2, "timeout": 5})
    def test_under_the_cap_the_pool_opens_another_instead(self) -> None:
        pid, _ = served("t00")

        other, rows = served("t01")

        assert (other != pid, rows) == (True, ["t01"])
        assert served("t00") == (pid, ["t00"])

    # Given back idle by another thread, or parked by it: on t01 either way.
    @pytest.mark.parametrize("parked", [False, True])
    @override_settings(SCHEMATA_POOL={"max_size": 2, "timeout": 5})
    def test_a_connection_already_on_the_schema_is_handed_out_instead(self, parked: bool) -> None:
        def elsewhere() -> int:
            pid = served("t01")[0] if parked else backend_pid("t01")
            if not parked:
                end_request()
            return pid

        on_t01 = in_thread(elsewhere)
        served("t00")
        moved = pool().stats.moved

        assert served("t01") == (on_t01, ["t01"])
        assert pool().stats.moved == moved

    @override_settings(SCHEMATA_POOL={"max_size": 2, "timeout": 5})
    def test_the_parked_connection_in_the_schemas_slot_is_moved_not_the_oldest(self) -> None:
        from schemata.conf import conf

        oldest, _ = served("t00")
        newest, _ = served("t01")  # under the cap: a second connection, in the other slot
        wrapper = connections["t01"]
        slot = pool().slots[id(wrapper.connection)]
        del wrapper
        database = connections["default"].settings_dict["NAME"]
        name = next(
            name
            for name in (f"t{i:02}" for i in range(2, 64))
            if pool().slot(f"{database}:{conf.databases.search_path(name)}") == slot
        )

        assert served(name) == (newest, [name])
        assert served("t00") == (oldest, ["t00"])


def run_on(name: str, statement: str) -> list[str]:
    """A request on schema ``name`` that runs ``statement``, then reads the titles there."""
    request_started.send(sender=None)
    try:
        with schemata.override(name), schemata.get_connection().cursor() as cursor:
            cursor.execute(statement)
        return titles(name)
    finally:
        request_finished.send(sender=None)


@pytest.mark.usefixtures("capped")
class TestOwnSessionState:
    """A statement of the caller's that changes its connection's search path, or makes a
    temporary table, holds for the rest of its request; no other request sees it."""

    @pytest.mark.parametrize(
        "statement",
        [
            "SET search_path = t01",
            "SET SESSION Search_Path TO t01, public",
            "SELECT set_config('search_path', 't01', false)",
            "set schema 't01'",
            "RESET ALL",
            "DISCARD ALL",
        ],
    )
    def test_the_next_request_on_the_schema_reads_its_own_rows(self, statement: str) -> None:
        served("t00")  # parked on t00

        assert run_on("t00", statement) != ["t00"]  # the statement's own request: as it said

        assert served("t00")[1] == ["t00"]

    @pytest.mark.parametrize(
        "statement",
        [
            "CREATE TEMP TABLE testapp_note AS SELECT 1 AS id, 'left over' AS title",
            "SELECT 1 AS id, 'left over'::text AS title INTO TEMPORARY testapp_note",
            "CREATE TABLE pg_temp.testapp_note AS SELECT 1 AS id, 'left over' AS title",
        ],
    )
    def test_a_temporary_table_does_not_reach_the_next_schema(self, statement: str) -> None:
        served("t00")

        assert run_on("t00", statement) == ["left over"]  # found before t00's own table

        # A pool of one: the connection would have moved to t01, its temporary table with it.
        assert served("t01")[1] == ["t01"]
        assert served("t00")[1] == ["t00"]

    def test_a_statement_that_only_names_such_words_keeps_the_connection_parked(self) -> None:
        served("t00")
        stats = dict(vars(pool().stats))
        statement = "SELECT 1 AS reset_count, 'schema' AS search_label, 'attempt' AS template"

        assert run_on("t00", statement) == ["t00"]
        assert served("t00")[1] == ["t00"]

        after = vars(pool().stats)
        assert (after["moved"], after["opened"]) == (stats["moved"], stats["opened"])
        assert after["parked"] == stats["parked"] + 2
