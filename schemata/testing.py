"""Test isolation for schema aliases, for pytest (see ``pytest_plugin``) and unittest suites.

Django's test cases open their transactions (or flush) only on the aliases that ``DATABASES``
lists, and schema aliases are not listed. Here every schema alias a test touches is put under
the test's transaction the first time the test uses it, or flushed after a transactional test.
Only the schemas a test uses cost anything, however many there are.

While a test runs, ``django.db.connections`` has the class ``_IsolatingHandler``, which reports
each alias looked up to the active layers. It is a class swap (between two subclasses of our
own) rather than an override of ``__getitem__`` in ``SchemataConnectionHandler`` itself because
``connections[alias]`` runs dozens of times per request: production code must not pay for a
hook that only tests use. ``schemata.compat`` checks, at start-up, every Django internal this
module relies on (``TestCase._fixture_setup``/``_fixture_teardown``, ``Atomic._from_testcase``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from contextvars import Token
from typing import Any, ClassVar

from django.core.management import call_command
from django.db import connections, transaction
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.test import Client, TestCase, TransactionTestCase
from psycopg.pq import TransactionStatus

from schemata.conf import conf
from schemata.connections import SchemataConnectionHandler
from schemata.databases import DEFAULT_BASE, Schema, bases
from schemata.exceptions import SchemaUnavailable
from schemata.schemas import existing_schemas
from schemata.state import activate, get_schema, reset

_migrated = False


def schema_servers() -> list[str]:
    """The aliases of the servers that hold the settings' schemas: each needs a test database."""
    return bases(conf.databases)


def setup_schemas(parallel: int = 1, exclude: Iterable[str] = ()) -> None:
    """Create and migrate every schema in the test database but those in ``exclude``, once
    per process.

    Schemas already up to date (``--reuse-db``, ``--keepdb``) are only checked, in one query.
    Refuses to run on a server whose test database was not set up: its schemas would be made
    in the real one.
    """
    global _migrated
    if _migrated:
        return
    for alias in schema_servers():
        settings = connections[alias].settings_dict
        name = str(settings["NAME"])
        if name != settings.get("TEST", {}).get("NAME") and not name.startswith(
            TEST_DATABASE_PREFIX
        ):
            raise SchemaUnavailable(
                f"The test database of {alias!r} was not set up, so its schemas would be made "
                f"in the real database {name!r}. Tests that use the database must include "
                f"{alias!r} in their databases (the pytest plugin adds it; a TestCase of your "
                f"own: databases = {{{', '.join(map(repr, dict.fromkeys(['default', alias])))}}})."
            )
    call_command(
        "migrate_schemata",
        interactive=False,
        verbosity=0,
        parallel=parallel,
        exclude=list(exclude),
    )
    connections.close_all()
    _migrated = True


class _IsolatingHandler(SchemataConnectionHandler):
    """The connection handler while a test runs: reports each schema alias that is used."""

    def __getitem__(self, alias: str) -> Any:
        conn = super().__getitem__(alias)
        if not getattr(_local, "entering", False):
            # Entering a transaction looks the alias up again: let that pass, so that the
            # outer layer's transaction is entered before the inner layer's.
            _local.entering = True
            try:
                for layer in list(_layers):
                    layer.touch(alias)
            finally:
                _local.entering = False
        return conn


class Layer:
    """One level of isolation: a test class's or a test's transactions, or a flush list.

    In a test that rolls back, a schema alias runs on its base alias's connection, inside the
    test's transaction, with its search path set before each statement: rows written through
    any alias (shared rows included) are visible through every other, as in production where
    they are committed. A transactional test flushes the schemas it touched, and its flush of
    the base database cascades into the schema tables that refer to shared tables.
    """

    def __init__(self, transactional: bool = False) -> None:
        self.transactional = transactional
        self.thread = threading.get_ident()
        self.atomics: dict[str, transaction.Atomic] = {}
        self.touched: dict[str, None] = {}
        self.shared: list[str] = []
        self.cascades: list[Any] = []

    def touch(self, alias: str) -> None:
        if alias in self.touched or alias not in conf.databases.schemas:
            return
        if self.transactional:
            self.touched[alias] = None
        elif threading.get_ident() == self.thread:
            self.touched[alias] = None
            if _missing(alias):
                # Nothing to roll back: left as in production, where using it fails on a
                # connection of its own with the pool's error, and looking it up does not.
                return
            if _share(alias):
                self.shared.append(alias)
            atomic = transaction.atomic(using=alias)
            atomic._from_testcase = True  # type: ignore[attr-defined]
            atomic.__enter__()
            self.atomics[alias] = atomic

    def start(self) -> Layer:
        if not _layers:
            connections.__class__ = _IsolatingHandler
        _layers.append(self)
        if self.transactional:
            for base in sorted({schema.base for schema in conf.databases.schemas.values()}):
                cascade = connections[base].execute_wrapper(_cascade_truncate)
                cascade.__enter__()
                self.cascades.append(cascade)
        return self

    def stop(self) -> None:
        _layers.remove(self)
        if not _layers:
            connections.__class__ = SchemataConnectionHandler
        for alias, atomic in reversed(self.atomics.items()):
            transaction.set_rollback(True, using=alias)
            atomic.__exit__(None, None, None)
        for alias in reversed(self.shared):
            _unshare(alias)
        for alias in _present(self.touched) if self.transactional else ():
            connections[alias].close()
            call_command("flush", database=alias, interactive=False, verbosity=0)
        if self.transactional:
            # As TransactionTestCase closes its connections after each test; with the idle
            # ones of the schema pools (the test's threads' too), so that no session state
            # reaches the next test through a server connection.
            connections.close_all()
        for cascade in reversed(self.cascades):
            cascade.__exit__(None, None, None)
        # Tenants a test registered at run time are gone with its transaction or flush.
        from schemata.registry import registry

        registry.clear()


def _present(aliases: Iterable[str]) -> list[str]:
    """The schema aliases among ``aliases`` whose schema exists: a test may have dropped one,
    or deleted a tenant it registered (whose alias is gone), and there is nothing to empty."""
    schemas = conf.databases.schemas
    by_base: dict[str, list[str]] = {}
    for alias in aliases:
        if alias in schemas:
            by_base.setdefault(schemas[alias].base, []).append(alias)
    present = []
    for base, members in by_base.items():
        existing = existing_schemas(base)
        present += [alias for alias in members if schemas[alias].name in existing]
    return present


_layers: list[Layer] = []
_local = threading.local()
# Statements that must reach the connection whatever its path, even in a failed transaction.
_TRANSACTION_CONTROL = re.compile(r"\s*(SAVEPOINT|ROLLBACK|RELEASE)\b", re.IGNORECASE)


class _OnPath:
    """Execute wrapper: run each statement on ``path``, on a connection shared by aliases."""

    def __init__(self, path: str, schema: str | None) -> None:
        self.path = path
        self.schema = schema

    def __call__(
        self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        raw = context["connection"].connection
        if (
            raw.info.transaction_status != TransactionStatus.INERROR
            and not _TRANSACTION_CONTROL.match(sql)
        ):
            with raw.cursor() as cursor:
                cursor.execute(
                    "SELECT current_schemas(false) FROM set_config('search_path', %s, false)",
                    [self.path],
                )
                row = cursor.fetchone()
            if self.schema is not None and (not row or row[0][:1] != [self.schema]):
                raise SchemaUnavailable(
                    f"The schema {self.schema!r} does not exist in the test database: create "
                    f"it (the schemata_setup fixture migrates every schema of SCHEMATA_DOMAINS)."
                )
        return execute(sql, params, many, context)


def _missing(alias: str) -> bool:
    """Whether ``alias``'s schema is missing from its base's database, as the base's
    connection (in the test's transaction, where a test may have created it) sees it."""
    schema = conf.databases.schemas[alias]
    base = connections[schema.base]
    base.ensure_connection()
    # Not through the wrapper: a test that counts its queries must not count this one.
    with base.connection.cursor() as cursor:
        cursor.execute("SELECT to_regnamespace(%s) IS NULL", [schema.name])
        row = cursor.fetchone()
    return bool(row and row[0])


def _share(alias: str) -> bool:
    """Put ``alias`` on its base alias's connection, in the test's transaction there."""
    base = connections[conf.databases.schemas[alias].base]
    if not base.in_atomic_block:
        return False  # the base is not under the test's transaction: keep a connection apart
    conn = connections[alias]
    base.ensure_connection()
    if conn.connection is base.connection:
        return False  # an outer layer shared it already
    if conn.connection is not None:
        conn.close()
    if not any(isinstance(wrapper, _OnPath) for wrapper in base.execute_wrappers):
        with base.connection.cursor() as cursor:
            path = cursor.execute("SHOW search_path").fetchone()[0]
        base.execute_wrappers.append(_OnPath(path, None))
    conn.execute_wrappers.append(_OnPath(conn._schemata_path, alias))  # type: ignore[attr-defined]
    conn.connection = base.connection
    conn.autocommit = False  # Atomic then nests in the base's transaction with a savepoint
    return True


def _unshare(alias: str) -> None:
    conn = connections[alias]
    conn.execute_wrappers[:] = [w for w in conn.execute_wrappers if not isinstance(w, _OnPath)]
    conn.connection = None
    # As after a connection closed inside the test's transaction: Atomic leaves it marked.
    conn.in_atomic_block = conn.closed_in_transaction = conn.needs_rollback = False
    conn.savepoint_ids = []
    conn.atomic_blocks = []
    base = connections[conf.databases.schemas[alias].base]
    others = [
        other
        for other in connections._schema_aliases()  # type: ignore[attr-defined]
        if other != alias and connections[other].connection is base.connection
    ]
    if not others:
        restore = [w for w in base.execute_wrappers if isinstance(w, _OnPath)]
        base.execute_wrappers[:] = [w for w in base.execute_wrappers if w not in restore]
        raw = base.connection
        if (
            restore
            and raw is not None
            and raw.info.transaction_status == TransactionStatus.INTRANS
        ):
            raw.execute("SELECT set_config('search_path', %s, false)", [restore[0].path])


def _cascade_truncate(
    execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    # Schema tables may refer to shared tables, and PostgreSQL refuses to truncate a table
    # that another table refers to unless the statement cascades.
    if sql.startswith("TRUNCATE ") and not sql.rstrip("; ").endswith("CASCADE"):
        sql = f"{sql.rstrip().rstrip(';')} CASCADE;"
    return execute(sql, params, many, context)


class _SchemaServers:
    """The ``databases`` of a test class that sets none: read when Django asks, once the
    settings are loaded."""

    def __get__(self, instance: object, owner: type) -> set[str]:
        return {DEFAULT_BASE, *schema_servers()}


class SchemataTestMixin:
    """Isolate the schema aliases a test touches; with ``schema`` set, activate that schema.

    ``self.client`` then sends the schema's first domain as its host.
    """

    schema: ClassVar[str | None] = None
    client: Client
    #: ``default`` and every server that holds schemas (Django sets up these test databases).
    databases: Any = _SchemaServers()
    _schemata_transactional: ClassVar[bool] = False
    _schemata_layer: ClassVar[Layer]
    _schemata_token: ClassVar[Token[Schema | None]]

    @classmethod
    def _fixture_setup(cls) -> None:  # a classmethod in Django, called once per test
        super()._fixture_setup()  # type: ignore[misc]
        cls._schemata_layer = Layer(cls._schemata_transactional).start()
        if cls.schema is not None:
            active = get_schema(cls.schema)
            cls._schemata_token = activate(active)
            cls.client = Client(HTTP_HOST=active.domains[0])

    def _fixture_teardown(self) -> None:
        if self.schema is not None:
            reset(self._schemata_token)
        if self._schemata_transactional:
            # Django flushes the base database first, through the layer's cascading wrapper.
            super()._fixture_teardown()  # type: ignore[misc]
            self._schemata_layer.stop()
        else:
            self._schemata_layer.stop()
            super()._fixture_teardown()  # type: ignore[misc]


class SchemataTestCase(SchemataTestMixin, TestCase):
    """``TestCase`` that also rolls back every schema the test or ``setUpTestData`` wrote to."""

    _schemata_class_layer: ClassVar[Layer]

    @classmethod
    def setUpClass(cls) -> None:
        setup_schemas()
        # A class-wide layer: what setUpTestData writes in schemas is kept for the class's
        # tests and rolled back after the last one, as TestCase does for 'default'.
        cls._schemata_class_layer = Layer().start()
        try:
            super().setUpClass()
        except Exception:
            cls._schemata_class_layer.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        # Before TestCase rolls back the class's transaction, which the schemas joined.
        cls._schemata_class_layer.stop()
        super().tearDownClass()


class SchemataTransactionTestCase(SchemataTestMixin, TransactionTestCase):
    """``TransactionTestCase`` that also empties every schema the test touched, after it."""

    _schemata_transactional = True

    @classmethod
    def setUpClass(cls) -> None:
        setup_schemas()
        super().setUpClass()
