"""pytest fixtures for projects that use django-schemata, on top of pytest-django.

Registered through the ``pytest11`` entry point: installing django-schemata is enough.
Every test that uses the database gets its schema writes rolled back (or flushed, for
transactional tests) on every schema alias it touches; the schemas are created and migrated in
the test database once per session, before the first such test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.test import Client

    from schemata.databases import Schema

TRANSACTIONAL_FIXTURES = {"transactional_db", "live_server", "django_db_reset_sequences"}
DB_FIXTURES = {"db", *TRANSACTIONAL_FIXTURES}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "schemata_parallel",
        "Worker processes that migrate the schemas at the start of the session (default 1).",
        default="1",
    )
    parser.addini(
        "schemata_exclude",
        "Schemas of SCHEMATA_DOMAINS that the session does not create or migrate, and that "
        "every_schema and schema leave out: those your tests create, or keep missing.",
        type="args",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "schema(name): the schema that the `schema` fixture activates."
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Have pytest-django set up the test database of every server that holds schemas.

    It sets up ``default``'s alone unless a test names others; the schemas of another server
    would then be made, and written, in that server's real database.
    """
    from django.conf import settings

    from schemata.databases import DEFAULT_BASE, SchemataDatabases

    # Without Django's settings (pytest run outside a project), or before expand_databases()
    # is in them (schemata.E001 says so), there is nothing to add.
    if not settings.configured or not isinstance(settings.DATABASES, SchemataDatabases):
        return
    from schemata.testing import schema_servers

    servers = schema_servers()
    if servers == [DEFAULT_BASE]:
        return
    for item in items:
        marker = item.get_closest_marker("django_db")
        fixtures = set(getattr(item, "fixturenames", ()))
        if marker is None and not fixtures & DB_FIXTURES:
            continue
        wanted = _django_db(*marker.args, **marker.kwargs) if marker else {}
        databases = wanted.get("databases")
        if databases == "__all__":
            continue
        wanted["databases"] = sorted({*(databases or [DEFAULT_BASE]), *servers})
        if marker is None and fixtures & TRANSACTIONAL_FIXTURES:
            wanted["transaction"] = True
        # First: the closest marker is the one pytest-django reads.
        item.add_marker(pytest.mark.django_db(**wanted), append=False)


def _django_db(
    transaction: bool = False,
    reset_sequences: bool = False,
    databases: Any = None,
    serialized_rollback: bool = False,
    available_apps: Any = None,
) -> dict[str, Any]:
    """The arguments of a ``django_db`` marker, by name (its signature in pytest-django)."""
    return {
        "transaction": transaction,
        "reset_sequences": reset_sequences,
        "databases": databases,
        "serialized_rollback": serialized_rollback,
        "available_apps": available_apps,
    }


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "every_schema" in metafunc.fixturenames:
        names = _created(metafunc.config)
        metafunc.parametrize("every_schema", names, ids=names, indirect=True)


def _created(config: pytest.Config) -> list[str]:
    """The schemas of ``SCHEMATA_DOMAINS`` that the session creates, in the settings' order."""
    from schemata.conf import conf

    excluded = set(config.getini("schemata_exclude"))
    return [name for name in conf.databases.schemas if name not in excluded]


def _uses_db(request: pytest.FixtureRequest) -> tuple[bool, bool]:
    """Whether the test uses the database, and whether transactionally (as pytest-django)."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    transactional = bool(names & TRANSACTIONAL_FIXTURES) or bool(
        marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))
    )
    return marker is not None or bool(names & DB_FIXTURES), transactional


@pytest.fixture(scope="session")
def schemata_setup(
    django_db_setup: None, django_db_blocker: Any, pytestconfig: Any
) -> Iterator[None]:
    """Create and migrate every schema of ``SCHEMATA_DOMAINS`` in the test database, once
    (but those the ``schemata_exclude`` ini option names).

    With ``--reuse-db`` the schemas are kept between sessions and only checked. Schema
    connections are closed at the end, so that the test database can be dropped. Turns
    ``SCHEMATA_ATOMIC_GUARD`` on for the session unless the settings set it (to ``None`` too).
    """
    from django.conf import settings
    from django.db import connections
    from django.test import override_settings

    from schemata.testing import setup_schemas

    # pytest-django runs tests with DEBUG off, which would leave the guard off. Set in the
    # settings, to None (follow DEBUG) too, it is theirs.
    guard = override_settings(SCHEMATA_ATOMIC_GUARD=True)
    guarded = not hasattr(settings, "SCHEMATA_ATOMIC_GUARD")
    if guarded:
        guard.enable()
    try:
        with django_db_blocker.unblock():
            setup_schemas(
                parallel=int(pytestconfig.getini("schemata_parallel")),
                exclude=pytestconfig.getini("schemata_exclude"),
            )
        yield
    finally:
        with django_db_blocker.unblock():
            connections.close_all()
        if guarded:
            guard.disable()


@pytest.fixture(autouse=True)
def _schemata_isolation(request: pytest.FixtureRequest) -> Iterator[None]:
    from schemata.testing import Layer, SchemataTestMixin

    uses_db, transactional = _uses_db(request)
    if not uses_db or isinstance(request.instance, SchemataTestMixin):
        yield
        return
    request.getfixturevalue("schemata_setup")
    blocker = request.getfixturevalue("django_db_blocker")
    if not transactional:
        # Set up after (so torn down before) the test's transaction on the base database,
        # which the schema aliases join.
        request.getfixturevalue("db")
    layer = Layer(transactional).start()
    try:
        yield
    finally:
        with blocker.unblock():
            layer.stop()


@pytest.fixture
def schema(request: pytest.FixtureRequest, db: None) -> Iterator[Schema]:
    """Activate a schema for the test and return it; its writes are rolled back after.

    The schema is the one named by ``@pytest.mark.schema("name")``, else the first schema in
    ``SCHEMATA_DOMAINS`` that ``schemata_exclude`` does not name.
    """
    marker = request.node.get_closest_marker("schema")
    name = marker.args[0] if marker else _created(request.config)[0]
    yield from _override(name)


@pytest.fixture
def every_schema(request: pytest.FixtureRequest, db: None) -> Iterator[Schema]:
    """Run the test once per schema in ``SCHEMATA_DOMAINS`` (but those of ``schemata_exclude``),
    with that schema active."""
    yield from _override(request.param)


def _override(name: str) -> Iterator[Schema]:
    from schemata.state import override

    with override(name) as schema:
        assert schema is not None
        yield schema


@pytest.fixture
def schema_client(schema: Schema) -> Client:
    """A Django test ``Client`` whose requests carry the active schema's first domain as Host."""
    from django.test import Client

    return Client(HTTP_HOST=schema.domains[0])
