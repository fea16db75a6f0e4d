from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections, transaction
from django.test import override_settings

import schemata
from schemata import NoActiveSchema, TransactionMismatch
from tests.test_connections import in_thread
from tests.testapp.models import Note


@pytest.mark.usefixtures("schemas")
class TestHelpers:
    def test_atomic_rolls_back_the_active_schemas_writes(self) -> None:
        with schemata.override("alpha"):
            with pytest.raises(ValueError), schemata.atomic():
                Note.objects.create(title="rolled back")
                raise ValueError
            Note.objects.create(title="kept")

        assert list(Note.objects.using("alpha").values_list("title", flat=True)) == ["kept"]

    def test_atomic_as_a_decorator_picks_the_schema_at_call_time(self) -> None:
        def depths() -> dict[str, int]:
            return {alias: len(connections[alias].savepoint_ids) for alias in ("alpha", "beta")}

        @schemata.atomic
        def decorated() -> dict[str, int]:
            return depths()

        before = depths()
        with schemata.override("beta"):
            in_beta = decorated()
        with schemata.override("alpha"):
            in_alpha = decorated()

        assert in_beta == {"alpha": before["alpha"], "beta": before["beta"] + 1}
        assert in_alpha == {"alpha": before["alpha"] + 1, "beta": before["beta"]}
        assert depths() == before

    def test_on_commit_runs_when_the_schemas_transaction_commits(
        self, django_capture_on_commit_callbacks: Any
    ) -> None:
        called: list[str] = []

        with (
            django_capture_on_commit_callbacks(using="alpha", execute=True) as callbacks,
            schemata.override("alpha"),
        ):
            schemata.on_commit(lambda: called.append("alpha"))

        assert len(callbacks) == 1
        assert called == ["alpha"]

    def test_get_connection_follows_the_active_schema(self) -> None:
        with schemata.override("beta"):
            assert schemata.get_connection() is connections["beta"]
        assert schemata.get_connection() is connections["default"]

    @override_settings(SCHEMATA_STRICT=True)
    def test_helpers_refuse_to_guess_in_strict_mode(self) -> None:
        with pytest.raises(NoActiveSchema) as excinfo:
            schemata.get_connection()

        assert str(excinfo.value) == (
            "No schema is active and SCHEMATA_STRICT is on: activate one with "
            "schemata.activate() or schemata.override(), or pass the alias explicitly."
        )


@pytest.mark.usefixtures("light_schemas")
class TestBareAtomic:
    def test_schemata_atomic_rolls_back_schema_and_default_writes_together(self) -> None:
        def scenario() -> None:
            with (
                pytest.raises(ValueError),
                transaction.atomic(),
                schemata.override("t05"),
                schemata.atomic(),
            ):
                Note.objects.using("default").create(title="public")
                Note.objects.create(title="tenant")
                raise ValueError

        in_thread(scenario)

        assert Note.objects.using("t05").count() == 0
        assert Note.objects.using("default").count() == 0

    def test_atomic_as_a_decorator_is_safe_in_two_threads_at_once(self) -> None:
        # The second call enters its transaction while the first is still in its own: one
        # shared context manager would make the first leave the second's transaction.
        first_in, second_in = threading.Event(), threading.Event()

        @schemata.atomic
        def write(title: str, entered: threading.Event, stay_until: threading.Event) -> None:
            Note.objects.create(title=title)
            entered.set()
            assert stay_until.wait(timeout=30)
            if title == "rolled back":
                raise ValueError

        def first() -> None:
            with schemata.override("t10"):
                write("kept", first_in, second_in)

        def second() -> None:
            assert first_in.wait(timeout=30)
            with schemata.override("t11"), contextlib.suppress(ValueError):
                write("rolled back", second_in, second_in)

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(in_thread, first), pool.submit(in_thread, second)]
            for future in futures:
                future.result()

        assert list(Note.objects.using("t10").values_list("title", flat=True)) == ["kept"]
        assert Note.objects.using("t11").count() == 0

    @override_settings(SCHEMATA_ATOMIC_GUARD=False)
    def test_without_the_guard_a_bare_atomic_does_not_protect_schema_writes(self) -> None:
        # The fact the guard exists for: transaction.atomic() means 'default'.
        def scenario() -> None:
            with pytest.raises(ValueError), transaction.atomic(), schemata.override("t06"):
                Note.objects.create(title="survives the rollback")
                raise ValueError

        in_thread(scenario)

        assert list(Note.objects.using("t06").values_list("title", flat=True)) == [
            "survives the rollback"
        ]

    @override_settings(SCHEMATA_ATOMIC_GUARD=True)
    def test_the_guard_refuses_a_schema_write_inside_a_bare_atomic(self) -> None:
        def scenario() -> None:
            with transaction.atomic(), schemata.override("t07"):
                Note.objects.create(title="refused")

        with pytest.raises(TransactionMismatch) as excinfo:
            in_thread(scenario)

        assert str(excinfo.value) == (
            "A query on schema 't07' ran in autocommit while transaction.atomic() is open on "
            "'default', so it would not be rolled back with it. Use schemata.atomic() (or "
            "transaction.atomic(using=...)) for schema data. Set SCHEMATA_ATOMIC_GUARD = False "
            "to allow this."
        )
        assert Note.objects.using("t07").count() == 0

    @override_settings(SCHEMATA_ATOMIC_GUARD=True)
    def test_the_guard_lets_schema_transactions_and_plain_autocommit_through(self) -> None:
        def scenario() -> None:
            with schemata.override("t08"):
                Note.objects.create(title="autocommit")
                with transaction.atomic(), schemata.atomic():
                    Note.objects.create(title="both atomic")

        in_thread(scenario)

        assert Note.objects.using("t08").count() == 2

    @override_settings(DEBUG=True)
    def test_the_guard_is_on_by_default_in_debug(self) -> None:
        def scenario() -> None:
            with transaction.atomic(), schemata.override("t09"):
                Note.objects.count()

        with pytest.raises(TransactionMismatch):
            in_thread(scenario)
