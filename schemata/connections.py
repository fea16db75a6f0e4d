"""Per-thread bookkeeping of schema connections, and the checks made on each of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.local import Local
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionHandler

from schemata.conf import conf
from schemata.databases import GUARD_SCHEMA, SchemataDatabases
from schemata.exceptions import SchemaUnavailable, TransactionMismatch


class SchemataConnectionHandler(ConnectionHandler):
    """``django.db.connections``, aware of the schema aliases that ``DATABASES`` does not list.

    Django finds open connections by walking every configured alias (three times per
    request). Schema aliases are not listed, so this handler remembers, per thread, the ones
    it created a connection object for, and ``all()`` returns those as well.
    """

    _schemata_local: Local

    def _schema_aliases(self) -> dict[str, None]:
        try:
            return self._schemata_local.aliases  # type: ignore[no-any-return]
        except AttributeError:
            aliases: dict[str, None] = {}
            self._schemata_local.aliases = aliases
            return aliases

    def _is_schema_alias(self, alias: str) -> bool:
        databases = self.settings
        return isinstance(databases, SchemataDatabases) and alias in databases.schemas

    def create_connection(self, alias: str) -> BaseDatabaseWrapper:
        conn = super().create_connection(alias)
        if self._is_schema_alias(alias):
            self._track(alias, conn)
            if conf.ATOMIC_GUARD:
                conn.execute_wrappers.append(_atomic_guard)
        return conn

    def __setitem__(self, alias: str, conn: BaseDatabaseWrapper) -> None:
        super().__setitem__(alias, conn)
        if self._is_schema_alias(alias):
            self._track(alias, conn)

    def _track(self, alias: str, conn: BaseDatabaseWrapper) -> None:
        self._schema_aliases()[alias] = None
        introspection = type(conn.introspection)
        if not issubclass(introspection, SchemaIntrospection):
            conn.introspection.__class__ = _scoped_introspection(introspection)

    def __delitem__(self, alias: str) -> None:
        super().__delitem__(alias)
        self._schema_aliases().pop(alias, None)

    def all(self, initialized_only: bool = False) -> list[BaseDatabaseWrapper]:
        conns: list[BaseDatabaseWrapper] = list(super().all(initialized_only=initialized_only))
        return conns + [self[alias] for alias in list(self._schema_aliases())]

    def discard_schema_connections(self) -> None:
        """Close and forget this thread's schema connections, except those in a transaction."""
        for alias in list(self._schema_aliases()):
            conn = self[alias]
            if not conn.in_atomic_block:
                conn.close()
                del self[alias]

    def release_idle(self) -> None:
        """Forget this thread's schema connection objects that hold no open connection."""
        for alias in list(self._schema_aliases()):
            conn = self[alias]
            # Keep anything a caller still holds on to: a transaction, a query capture, an
            # execute wrapper of their own.
            if (
                conn.connection is None
                and not conn.in_atomic_block
                and not conn.force_debug_cursor
                and all(wrapper is _atomic_guard for wrapper in conn.execute_wrappers)
            ):
                del self[alias]


class SchemaIntrospection:
    """Introspection that lists the connection's own schema's tables only.

    Django lists the tables visible on the search path (``pg_table_is_visible``): with
    ``public`` on the path too, a schema would seem to have ``public``'s tables, its
    ``django_migrations`` included, and ``migrate`` would skip its migrations.
    """

    def get_table_list(self, cursor: Any) -> list[Any]:
        from django.db.backends.postgresql.introspection import TableInfo

        # Found through pg_depend, whose index starts with the namespace: pg_class has no
        # index on relnamespace alone, and a scan grows with every schema in the database.
        cursor.execute(
            "SELECT c.relname, CASE WHEN c.relispartition THEN 'p' "
            "WHEN c.relkind IN ('m', 'v') THEN 'v' ELSE 't' END, "
            "obj_description(c.oid, 'pg_class') "
            "FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid "
            "WHERE d.refclassid = 'pg_namespace'::regclass "
            "AND d.refobjid = current_schema()::text::regnamespace "
            "AND d.classid = 'pg_class'::regclass AND d.deptype = 'n' "
            "AND c.relkind IN ('f', 'm', 'p', 'r', 'v')"
        )
        ignored = self.ignored_tables  # type: ignore[attr-defined]
        return [TableInfo(*row) for row in cursor.fetchall() if row[0] not in ignored]


_scoped_classes: dict[type[Any], type[Any]] = {}


def _scoped_introspection(base: type[Any]) -> type[Any]:
    if base not in _scoped_classes:
        _scoped_classes[base] = type(f"Schema{base.__name__}", (SchemaIntrospection, base), {})
    return _scoped_classes[base]


def install() -> None:
    """Give ``django.db.connections`` the schema-aware behaviour (idempotent)."""
    if not isinstance(connections, SchemataConnectionHandler):
        # Every module holds this very object (`from django.db import connections`), so it
        # is given the subclass in place rather than replaced.
        connections._schemata_local = Local(connections.thread_critical)  # type: ignore[attr-defined]
        connections.__class__ = SchemataConnectionHandler


def release_idle_connections(**kwargs: Any) -> None:
    """``request_finished`` receiver: runs after Django's ``close_old_connections``.

    (Django connects that one at import, before any app is ready; the test client disconnects
    and reconnects it around each request, which puts it last.)
    """
    if isinstance(connections, SchemataConnectionHandler):
        connections.release_idle()


def discard_on_setting_change(setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: a schema connection's settings are fixed when it is made."""
    if setting == "DATABASES":
        # Django caches DATABASES in the handler for good (BaseConnectionHandler.settings).
        connections.__dict__.pop("settings", None)
        connections._settings = None  # type: ignore[attr-defined]
    if (setting == "DATABASES" or setting.startswith("SCHEMATA_")) and isinstance(
        connections, SchemataConnectionHandler
    ):
        connections.discard_schema_connections()


def verify_search_path(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: refuse a schema connection whose path is not whole."""
    schema = conf.databases.schemas.get(connection.alias)
    if schema is None:
        return
    # The raw connection: this check is neither logged as a query nor guarded. The path as
    # resolved lists only schemas that exist and that the role may use.
    row = connection.connection.execute("SELECT current_schemas(false)").fetchone()
    resolved: list[str] = row[0] if row else []
    current = resolved[0] if resolved else None
    database = connection.settings_dict["NAME"]
    if current != schema.name:
        connection.close()
        raise SchemaUnavailable(
            f"The schema {schema.name!r} (database alias {connection.alias!r}) does not exist "
            f"in database {database!r} or its role may not use it "
            f"(current_schema() is {current!r}). Create it with "
            f"'python manage.py manage_schemata', or grant USAGE on it."
        )
    if conf.SHARED_APPS and resolved[1:2] != [GUARD_SCHEMA]:
        connection.close()
        raise SchemaUnavailable(
            f"The schema {GUARD_SCHEMA!r} is missing from database {database!r}: without it, "
            f"a table missing from {schema.name!r} would be read from public. Run "
            f"'python manage.py migrate' (it rebuilds {GUARD_SCHEMA!r} when "
            f"SCHEMATA_SHARED_APPS is set)."
        )


def _atomic_guard(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    conn = context["connection"]
    if not conn.in_atomic_block:
        base = conf.databases.schemas[conn.alias].base
        if connections[base].in_atomic_block:
            raise TransactionMismatch(
                f"A query on schema {conn.alias!r} ran in autocommit while "
                f"transaction.atomic() is open on {base!r}, so it would not be rolled back "
                f"with it. Use schemata.atomic() (or transaction.atomic(using=...)) for schema "
                f"data. Set SCHEMATA_ATOMIC_GUARD = False to allow this."
            )
    return execute(sql, params, many, context)
