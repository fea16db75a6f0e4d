from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator

import pytest
from django.db import connections

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


#: The schemas of the concurrency tests: one per thread or task.
LIGHT_SCHEMAS = tuple(f"t{i:02}" for i in range(64))
#: Created, migrated and dropped by the tests of commands.
FRESH_SCHEMAS = ("fresh1", "fresh2", "fresh3", "fresh4")
#: In the settings, never created: what a missing schema does.
MISSING_SCHEMA = "ghost"


def pytest_configure(config: pytest.Config) -> None:
    # The pytest plugin creates and migrates every other schema of the settings.
    for name in (MISSING_SCHEMA, *FRESH_SCHEMAS):
        config.addinivalue_line("schemata_exclude", name)


@pytest.fixture
def schemas(db: None) -> None:
    """A test that writes to ``alpha`` and ``beta``: the plugin rolls their writes back with
    the test's transaction."""


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


@pytest.fixture
def limited_role(transactional_db: None) -> Iterator[str]:
    """A login role with no privilege of its own, dropped after the test with its grants."""
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS schemata_limited")
        cursor.execute("CREATE ROLE schemata_limited LOGIN")
    yield "schemata_limited"
    with connections["default"].cursor() as cursor:
        cursor.execute("DROP OWNED BY schemata_limited")
        cursor.execute("DROP ROLE schemata_limited")


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
