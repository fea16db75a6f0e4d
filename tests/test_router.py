from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

import schemata
from schemata import NoActiveSchema, expand_databases
from schemata.routers import SchemataRouter
from tests.testapp.models import Note, Tag

pytestmark = pytest.mark.usefixtures("schemas")


def titles(schema: str) -> list[str]:
    with schemata.override(schema):
        return sorted(Note.objects.values_list("title", flat=True))


def test_orm_queries_go_to_the_active_schema_only() -> None:
    with schemata.override("alpha"):
        Note.objects.create(title="in alpha")
    with schemata.override("beta"):
        Note.objects.create(title="in beta")

    assert titles("alpha") == ["in alpha"]
    assert titles("beta") == ["in beta"]
    assert list(Note.objects.using("default").values_list("title", flat=True)) == []


def test_rows_live_in_the_schema_table() -> None:
    with schemata.override("alpha"):
        Note.objects.create(title="where am i")

    with connections["alpha"].cursor() as cursor:
        cursor.execute("SELECT current_schema(), current_setting('search_path')")
        assert cursor.fetchone() == ("alpha", "alpha")
        cursor.execute("SELECT title FROM alpha.testapp_note")
        assert cursor.fetchall() == [("where am i",)]
        cursor.execute("SELECT count(*) FROM beta.testapp_note")
        assert cursor.fetchone() == (0,)


def test_an_instance_is_saved_where_it_was_loaded_whatever_is_active() -> None:
    with schemata.override("alpha"):
        note = Note.objects.create(title="first")
    with schemata.override("beta"):
        note.title = "renamed"
        note.save()

    assert note._state.db == "alpha"
    assert titles("alpha") == ["renamed"]
    assert titles("beta") == []


def test_related_managers_follow_the_parent_instance() -> None:
    with schemata.override("alpha"):
        note = Note.objects.create(title="parent")
    with schemata.override("beta"):
        note.tags.create(label="child")
        labels = list(note.tags.values_list("label", flat=True))

    assert labels == ["child"]
    assert Tag.objects.using("alpha").count() == 1
    assert Tag.objects.using("beta").count() == 0


def test_with_no_active_schema_queries_use_default() -> None:
    Note.objects.create(title="in public")

    assert list(Note.objects.using("default").values_list("title", flat=True)) == ["in public"]
    assert titles("alpha") == []


@override_settings(SCHEMATA_STRICT=True)
def test_strict_mode_refuses_a_query_with_no_active_schema() -> None:
    with pytest.raises(NoActiveSchema) as excinfo:
        Note.objects.count()

    assert str(excinfo.value) == (
        "testapp.Note was queried with no active schema and SCHEMATA_STRICT is on: activate "
        "a schema (SchemataMiddleware, schemata.activate() or schemata.override()) or pass "
        ".using(alias)."
    )
    assert Note.objects.using("default").count() == 0


def test_relations_between_schemas_of_one_database_are_allowed() -> None:
    router = SchemataRouter()
    alpha, beta, unsaved = Note(), Note(), Note()
    alpha._state.db, beta._state.db = "alpha", "beta"

    assert router.allow_relation(alpha, beta) is True
    assert router.allow_relation(alpha, unsaved) is None


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_relations_with_another_server_are_refused() -> None:
    databases = expand_databases(
        {
            "default": connections.settings["default"],
            "elsewhere": {"HOST": "o", "NAME": "x"},
            "replica": {"HOST": "r", "NAME": "x"},
        },
        {
            **settings.SCHEMATA_DOMAINS,
            "far.example.com": {"schema_name": "far", "database": "elsewhere"},
        },
    )
    router = SchemataRouter()
    alpha, other, far, replica = Note(), Note(), Note(), Note()
    alpha._state.db, other._state.db, far._state.db = "alpha", "elsewhere", "far"
    replica._state.db = "replica"

    with override_settings(DATABASES=databases):
        assert router.allow_relation(alpha, other) is False
        assert router.allow_relation(alpha, far) is False
        assert router.allow_relation(far, other) is True  # its server's public
        # Between the project's own aliases, its own routers decide.
        assert router.allow_relation(other, replica) is None


def test_allow_migrate_has_no_opinion() -> None:
    assert SchemataRouter().allow_migrate("alpha", "testapp", "note") is None
