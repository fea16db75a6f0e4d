from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections, transaction

from schemata.schemas import create_schema

pytest_plugins = ["pytester", "tests.services"]

#: Subprocesses (python -m django, -c, spawned workers) import the package under test, installed
#: in site-packages by ./tests/run, and not the repository's copy: neither the working
#: directory nor the script's directory is put first on their sys.path (PYTHONSAFEPATH), and
#: the repository root comes after the installed package (for the tests package).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INSTALLED = os.path.dirname(os.path.dirname(importlib.util.find_spec("schemata").origin))  # type: ignore[arg-type, union-attr]
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([_INSTALLED, _ROOT]))
os.environ["PYTHONSAFEPATH"] = "1"

_SYS_PATH = list(sys.path)


@pytest.fixture(autouse=True)
def _keep_sys_path() -> Iterator[None]:
    """Celery's Django fixup puts the working directory (the repository root) first on
    sys.path whenever its app finalizes; subprocesses started later would then import the
    repository's copy of the package instead of the installed one."""
    yield
    if sys.path[:1] != _SYS_PATH[:1]:
        sys.path[:] = [entry for entry in sys.path if entry != os.getcwd()] + [os.getcwd()]


#: Schemas with every app migrated; the t00..t63 schemas only get the test app's tables.
FULL_SCHEMAS = ("alpha", "beta")
LIGHT_SCHEMAS = tuple(f"t{i:02}" for i in range(64))
#: Created, migrated and dropped by the tests of commands.
FRESH_SCHEMAS = ("fresh1", "fresh2", "fresh3", "fresh4")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Create and migrate the tenant schemas once, in the test database."""
    with django_db_blocker.unblock():
        for name in FULL_SCHEMAS + LIGHT_SCHEMAS:
            create_schema(name)
        for name in FULL_SCHEMAS:
            call_command("migrate", database=name, verbosity=0)
        for name in LIGHT_SCHEMAS:
            call_command("migrate", "testapp", database=name, verbosity=0)
        connections.close_all()
    yield
    # The test database cannot be dropped while schema connections are open.
    connections.close_all()


@pytest.fixture
def schemas(db: None) -> Iterator[None]:
    """Run the test inside a rolled-back transaction on ``alpha`` and ``beta`` as well."""
    atomics = {alias: transaction.atomic(using=alias) for alias in FULL_SCHEMAS}
    for atomic in atomics.values():
        atomic.__enter__()
    try:
        yield
    finally:
        for alias, atomic in reversed(atomics.items()):
            transaction.set_rollback(True, using=alias)
            atomic.__exit__(None, None, None)


@pytest.fixture
def light_schemas(transactional_db: None) -> Iterator[tuple[str, ...]]:
    """Empty the t00..t63 schemas before and after a test that commits from many threads."""

    def truncate() -> None:
        with connections["default"].cursor() as cursor:
            for name in LIGHT_SCHEMAS:
                cursor.execute(f"TRUNCATE {name}.testapp_note CASCADE")

    truncate()
    yield LIGHT_SCHEMAS
    connections.close_all()
    truncate()


def drop_fresh() -> None:
    connections.close_all()
    with connections["default"].cursor() as cursor:
        for name in FRESH_SCHEMAS:
            cursor.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def fresh(transactional_db: None) -> Iterator[None]:
    """Start and end without the fresh1..fresh4 schemas; their changes are committed."""
    drop_fresh()
    yield
    drop_fresh()


def forget_schema_connections() -> None:
    """Close and drop this thread's schema connections, so new ones read changed settings."""
    for alias in list(connections._schema_aliases()):  # type: ignore[attr-defined]
        connections[alias].close()
        del connections[alias]
