"""The testing kit's isolation layers (``schemata.testing``) in cases the plugin's and the
test cases' runs in a user's project (tests/test_pytest_plugin.py) do not reach."""

from __future__ import annotations

import unittest
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connections, transaction

from schemata import SchemaUnavailable, testing
from schemata.connections import SchemataConnectionHandler
from schemata.schemas import create_schema
from schemata.testing import Layer, SchemataTestCase, setup_schemas
from tests.test_connections import in_thread
from tests.testapp.models import Note


@pytest.fixture
def layer() -> Iterator[Layer]:
    """A layer that rolls back the schemas touched while it is active (as in a test)."""
    started = Layer().start()
    try:
        yield started
    finally:
        if started in testing._layers:
            started.stop()


def test_setting_up_schemas_refuses_a_database_that_is_not_a_test_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(testing, "_migrated", False)
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", "shop")

    with pytest.raises(SchemaUnavailable) as error:
        setup_schemas()

    assert str(error.value) == (
        "The test database of 'default' was not set up, so its schemas would be made in the "
        "real database 'shop'. Tests that use the database must include 'default' in their "
        "databases (the pytest plugin adds it; a TestCase of your own: databases = "
        "{'default'})."
    )


def test_a_schema_dropped_during_a_test_is_named(db: None, layer: Layer) -> None:
    Note.objects.using("alpha").count()  # alpha joins the test's transaction
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP SCHEMA alpha CASCADE")  # rolled back with the test

    with pytest.raises(SchemaUnavailable) as error:
        Note.objects.using("alpha").count()

    assert str(error.value) == (
        "The schema 'alpha' does not exist in the test database: create it (the schemata_setup "
        "fixture migrates every schema of SCHEMATA_DOMAINS)."
    )


def test_a_schema_missing_from_the_test_database_is_left_on_its_own_connection(
    db: None, layer: Layer
) -> None:
    ghost = connections["ghost"]

    with pytest.raises(SchemaUnavailable, match="Create it with 'python manage.py manage_sch"):
        Note.objects.using("ghost").count()

    assert "ghost" in layer.touched
    assert "ghost" not in layer.atomics
    assert ghost.connection is None
    assert Note.objects.using("default").count() == 0  # the test's transaction goes on


def test_a_schema_used_by_another_thread_is_left_out_of_the_tests_transaction(
    db: None, layer: Layer
) -> None:
    in_atomic = in_thread(lambda: connections["alpha"].in_atomic_block)

    assert in_atomic is False
    assert "alpha" not in layer.touched


def test_without_a_transaction_on_the_base_a_schema_is_rolled_back_on_its_own_connection(
    transactional_db: None,
) -> None:
    layer = Layer().start()
    try:
        Note.objects.using("alpha").create(title="x")
        apart = connections["alpha"].connection is not connections["default"].connection
        seen = Note.objects.using("alpha").count()
    finally:
        layer.stop()

    assert apart
    assert seen == 1
    assert Note.objects.using("alpha").count() == 0


def test_a_schema_connection_opened_before_the_test_goes_back_to_the_pool(
    transactional_db: None,
) -> None:
    connections["alpha"].ensure_connection()
    before = connections["alpha"].connection
    with transaction.atomic():  # the test's transaction, opened after alpha's connection
        layer = Layer().start()
        try:
            Note.objects.using("alpha").create(title="x")
            shared = connections["alpha"].connection is connections["default"].connection
        finally:
            layer.stop()
    connections["alpha"].ensure_connection()

    assert shared
    assert connections["alpha"].connection is before
    assert Note.objects.using("alpha").count() == 0


class FailingSetUp(SchemataTestCase):
    __test__ = False  # run by the test below, not collected

    @classmethod
    def setUpTestData(cls) -> None:
        Note.objects.using("alpha").create(title="half set up")
        raise RuntimeError("setUpTestData failed")

    def test_never_runs(self) -> None:
        raise AssertionError("the class was not set up")


def test_a_test_case_whose_set_up_fails_stops_its_schema_layer(
    transactional_db: None,
) -> None:
    result = unittest.TestResult()
    # The plugin's: in a transactional test, it only notes the schemas used.
    layers = list(testing._layers)

    unittest.defaultTestLoader.loadTestsFromTestCase(FailingSetUp).run(result)

    assert [str(error[1]).splitlines()[-1] for error in result.errors] == [
        "RuntimeError: setUpTestData failed"
    ]
    assert testing._layers == layers
    assert connections["alpha"].connection is not connections["default"].connection
    assert Note.objects.using("alpha").count() == 0


def test_the_connection_handler_gets_its_class_back_after_the_last_layer() -> None:
    layer = Layer().start()
    during = type(connections)
    layer.stop()

    assert during is testing._IsolatingHandler
    assert type(connections) is SchemataConnectionHandler


@pytest.mark.usefixtures("fresh")
def test_a_schema_a_transactional_test_dropped_is_not_emptied_after_it() -> None:
    create_schema("fresh1")
    call_command("migrate", "testapp", database="fresh1", verbosity=0)
    layer = Layer(transactional=True).start()
    Note.objects.using("alpha").create(title="x")
    Note.objects.using("fresh1").create(title="y")
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP SCHEMA fresh1 CASCADE")

    layer.stop()

    assert list(layer.touched) == ["alpha", "fresh1"]
    assert Note.objects.using("alpha").count() == 0
