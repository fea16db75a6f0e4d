"""Test isolation for schema aliases, for pytest (see ``pytest_plugin``) and unittest suites.

Django's test cases open their transactions (or flush) only on the aliases that ``DATABASES``
lists, and schema aliases are not listed. Here every schema alias a test touches is put under
the test's transaction the first time the test uses it, or flushed after a transactional test.
Only the schemas a test uses cost anything, however many there are.
"""

from __future__ import annotations

import threading
from contextvars import Token
from typing import Any, ClassVar

from django.core.management import call_command
from django.db import connections, transaction
from django.test import Client, TestCase, TransactionTestCase

from schemata.conf import conf
from schemata.connections import SchemataConnectionHandler
from schemata.databases import Schema
from schemata.state import activate, get_schema, reset

_migrated = False


def setup_schemas(parallel: int = 1) -> None:
    """Create and migrate every schema in the test database, once per process.

    Schemas already up to date (``--reuse-db``, ``--keepdb``) are only checked, in one query.
    """
    global _migrated
    if _migrated:
        return
    call_command("migrate_schemata", interactive=False, verbosity=0, parallel=parallel)
    connections.close_all()
    _migrated = True


class _IsolatingHandler(SchemataConnectionHandler):
    """The connection handler while a test runs: reports each schema alias that is used."""

    def __getitem__(self, alias: str) -> Any:
        global _entering
        conn = super().__getitem__(alias)
        if not _entering:
            # Entering a transaction looks the alias up again: let that pass, so that the
            # outer layer's transaction is entered before the inner layer's.
            _entering = True
            try:
                for layer in _layers:
                    layer.touch(alias)
            finally:
                _entering = False
        return conn


class Layer:
    """One level of isolation: a test class's or a test's transactions, or a flush list."""

    def __init__(self, transactional: bool = False) -> None:
        self.transactional = transactional
        self.thread = threading.get_ident()
        self.atomics: dict[str, transaction.Atomic] = {}
        self.touched: dict[str, None] = {}

    def touch(self, alias: str) -> None:
        if alias in self.touched or alias not in conf.databases.schemas:
            return
        if self.transactional:
            self.touched[alias] = None
        elif threading.get_ident() == self.thread:
            self.touched[alias] = None
            atomic = transaction.atomic(using=alias)
            atomic._from_testcase = True  # type: ignore[attr-defined]
            atomic.__enter__()
            self.atomics[alias] = atomic

    def start(self) -> Layer:
        if not _layers:
            connections.__class__ = _IsolatingHandler
        _layers.append(self)
        return self

    def stop(self) -> None:
        _layers.remove(self)
        if not _layers:
            connections.__class__ = SchemataConnectionHandler
        for alias, atomic in reversed(self.atomics.items()):
            transaction.set_rollback(True, using=alias)
            atomic.__exit__(None, None, None)
        for alias in self.touched if self.transactional else ():
            connections[alias].close()
            call_command("flush", database=alias, interactive=False, verbosity=0)


_layers: list[Layer] = []
_entering = False


class SchemataTestMixin:
    """Isolate the schema aliases a test touches; with ``schema`` set, activate that schema.

    ``self.client`` then sends the schema's first domain as its host.
    """

    schema: ClassVar[str | None] = None
    client: Client
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
        super().tearDownClass()
        cls._schemata_class_layer.stop()


class SchemataTransactionTestCase(SchemataTestMixin, TransactionTestCase):
    """``TransactionTestCase`` that also empties every schema the test touched, after it."""

    _schemata_transactional = True

    @classmethod
    def setUpClass(cls) -> None:
        setup_schemas()
        super().setUpClass()
