"""The database wrapper of schema aliases: the base alias's own, on a shared pool.

``schema_wrapper(base)`` subclasses whatever wrapper the base alias's ENGINE gives (PostgreSQL,
PostGIS, a project's own), so everything the engine does is kept. What changes:

- ``get_new_connection`` borrows from the base database's pool (``schemata/pool.py``) instead
  of connecting, and ``_close`` gives back instead of closing;
- the search path is verified when a connection is opened or moved, not on every hand-out; a
  moved connection's cursors carry the move in front of its next statement
  (``schemata/paths.py``), and ``create_cursor`` moves it first for a named cursor;
- introspection lists the schema's own tables only.

Django calls these two methods, ``init_connection_state`` and ``pool`` from ``connect()`` and
``close()`` in every release we support; ``schema_wrapper`` refuses a wrapper class that lacks
one of them, so a Django release that renames them fails at the first connection, loudly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache, lru_cache, partial
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend
from psycopg.pq import TransactionStatus

from schemata.conf import conf
from schemata.databases import DERIVED_CACHE_SIZE, GUARD_SCHEMA, Schema
from schemata.exceptions import SchemaUnavailable
from schemata.paths import Move, PathServerCursor, path_cursor, path_key, settle
from schemata.pool import SchemaPool, get_pool

#: What a schema wrapper overrides or relies on in Django's PostgreSQL wrapper.
REQUIRED = (
    "get_new_connection",
    "create_cursor",
    "_close",
    "init_connection_state",
    "pool",
    "introspection_class",
    "client_class",
)


@cache
def schema_wrapper(base: type[BaseDatabaseWrapper]) -> type[BaseDatabaseWrapper]:
    """The schema alias wrapper class derived from the base alias's wrapper class ``base``."""
    missing = [name for name in REQUIRED if not hasattr(base, name)]
    if missing:
        raise ImproperlyConfigured(
            f"{base.__module__}.{base.__qualname__} has no {', '.join(missing)}: this "
            f"Django release or database engine is not one django-schemata supports."
        )
    introspection = type(
        f"Schema{base.introspection_class.__name__}",
        (SchemaIntrospection, base.introspection_class),
        {},
    )
    client = type(f"Schema{base.client_class.__name__}", (SchemaClient, base.client_class), {})
    return type(
        f"Schema{base.__name__}",
        (_SchemaWrapperMixin, base),
        {"introspection_class": introspection, "client_class": client},
    )


@cache
def engine_wrapper(engine: str) -> type[BaseDatabaseWrapper]:
    """The schema alias wrapper class of ``ENGINE`` ``engine`` (read once: importing the
    engine's module again costs a microsecond, at every new schema connection object)."""
    return schema_wrapper(load_backend(engine).DatabaseWrapper)


class _SchemaWrapperMixin:
    """What every schema wrapper class adds to its base alias's wrapper class."""

    settings_dict: dict[str, Any]
    alias: str
    connection: Any
    execute_wrappers: list[Callable[..., Any]]
    isolation_level: Any
    in_atomic_block: bool
    queries_log: Any
    _schemata_key: str | None = None
    _schemata_parked = False
    _schemata_token: object = None
    _schemata_aliases: dict[str, Any] | None = None
    # Set while the connection this thread parked and handed to this wrapper is still on the
    # schema it served before (connections.SchemataConnectionHandler._hand_over): it moves at
    # the wrapper's first use.
    _schemata_handover = False
    close_at: float | None
    health_check_enabled: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from schemata.connections import atomic_guard

        super().__init__(*args, **kwargs)
        # Read once: a wrapper is dropped when settings change (connections.py).
        databases = conf.databases
        self.schema: Schema = databases.schemas[self.alias]
        self._schemata_path = databases.search_path(self.alias)
        self._schemata_pool: SchemaPool | None = None
        self._schemata_params: dict[str, Any] | None = None
        self._schemata_move: Move | None = None
        self._schemata_opened = False
        if conf.ATOMIC_GUARD:
            self.execute_wrappers.append(atomic_guard)

    def retarget(self, settings_dict: dict[str, Any], alias: str, path: str) -> bool:
        """Serve ``alias`` instead, if it is a schema of the same base; say whether it can.

        The handler offers only wrappers nobody else holds, closed and outside a transaction;
        one of a schema alias with the same base settings is reused: everything Django derives
        from those stays true. ``path``: the alias's search path.
        """
        schema = conf.databases.schemas[alias]
        if schema.base != self.schema.base:
            return False
        self.settings_dict = settings_dict
        self.alias = alias
        self.schema = schema
        self._schemata_path = path
        self._schemata_params = None
        self._schemata_move = None
        self.queries_log.clear()
        return True

    def get_connection_params(self) -> dict[str, Any]:
        # Built on every connect() by Django, but used only when the pool opens a connection.
        params = self._schemata_params
        if params is None:
            params = self._schemata_params = super().get_connection_params()  # type: ignore[misc]
            # Its cursors carry a pending move in front of their statements.
            params["cursor_factory"] = path_cursor(params["cursor_factory"])
        return dict(params)

    def init_connection_state(self) -> None:
        # A connection from the pool keeps the session state (time zone, role) it was given
        # when it was opened: configure new ones only.
        if self._schemata_opened:
            super().init_connection_state()  # type: ignore[misc]

    def _set_autocommit(self, autocommit: bool) -> None:
        # A pooled connection is given back in autocommit: psycopg would still go through a
        # wait for nothing on every hand-out.
        if self.connection.autocommit != autocommit:
            super()._set_autocommit(autocommit)  # type: ignore[misc]

    @property
    def pool(self) -> None:
        """Django's own pool stays off: schema aliases share the base database's pool."""
        return None

    def schemata_pool(self) -> SchemaPool:
        pool = self._schemata_pool
        if pool is None or pool.closed:
            pool_settings = conf.POOL
            base = self.schema.base
            user = self.settings_dict.get("USER")
            # A wrapper made with another role (a test's, say) must not be handed, or move,
            # a connection of the base's role: its pool is its own.
            if user != conf.databases[base].get("USER"):
                base = f"{base} as {user}"
            pool = self._schemata_pool = get_pool(
                base,
                pool_settings.max_size,
                pool_settings.timeout,
                move=conf.SCHEMA_DATABASE is None,
            )
        return pool

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        from schemata.connections import reclaim_idle

        opener = super().get_new_connection  # type: ignore[misc]
        # A search path given in the alias's own options (a test's settings, say) is the one a
        # new connection keeps: it is kept for a schema only on that path, and not moved.
        opened_on = str(conn_params.get("options", "")).rpartition("search_path=")[2]
        database = self.settings_dict["NAME"]
        move = self._schemata_path_move()
        key = move.key
        opened: list[str] = []

        def open_new() -> Any:
            opened.append(path_key(database, opened_on.split()[0] if opened_on else move.path))
            connection = opener(conn_params)
            connection.server_cursor_factory = PathServerCursor
            return connection

        connection = self.schemata_pool().acquire(
            move,
            open_new=open_new,
            reclaim=lambda: reclaim_idle(except_alias=self.alias),
            health_check=bool(self.settings_dict.get("CONN_HEALTH_CHECKS")),
            # With a database per schema (PgBouncer's connect_query sets the path) a session
            # setting would outlive the transaction on a server connection others share.
            path_on_open=not opened_on and conf.SCHEMA_DATABASE is None,
        )
        self._schemata_key = opened[-1] if opened else key
        self._schemata_opened = bool(opened)
        return self._configured(connection)

    def _schemata_path_move(self) -> Move:
        """The move of a connection to this wrapper's alias."""
        move = self._schemata_move
        if move is None:
            move = self._schemata_move = _move(
                self.schema,
                self.alias,
                self.settings_dict["NAME"],
                self._schemata_path,
                self.settings_dict["OPTIONS"]["application_name"],
                bool(conf.SHARED_APPS),
            )
        return move

    def schemata_take_over(self) -> None:
        """Serve this wrapper's (new) alias with the connection it kept, which another alias of
        this thread parked: it moves at the first use, and goes back on its old schema if that
        never comes.

        Instead of Django's ``connect()``: what that resets is already so for a connection
        parked outside a transaction, and the connection keeps its session state as any
        connection from the pool does (``connection_created`` is not sent again).
        """
        self._schemata_handover = True
        self.errors_occurred = False
        self.closed_in_transaction = False

    def _configured(self, connection: Any) -> Any:
        from psycopg import IsolationLevel

        # The pool decides when a connection goes, and checks one it hands out: Django's age
        # limit and health check would otherwise act on a connection parked between requests.
        self.close_at = None
        self.health_check_enabled = False
        # What Django's get_new_connection sets on the wrapper, for a connection it reuses.
        level = self.settings_dict["OPTIONS"].get("isolation_level")
        self.isolation_level = (
            IsolationLevel.READ_COMMITTED if level is None else IsolationLevel(level)
        )
        # A pooled connection keeps the level of the alias it served last (a test's own wrapper
        # may ask for another): psycopg's None is the server's default.
        wanted = None if level is None else self.isolation_level
        if connection.isolation_level != wanted:
            connection.isolation_level = wanted
        return connection

    def create_cursor(self, name: str | None = None) -> Any:
        if name is not None:
            # A named cursor declares its query in a statement of its own: move first.
            settle(self.connection)
        return super().create_cursor(name)  # type: ignore[misc]

    def ensure_connection(self) -> None:
        # Every use of the connection goes through here (cursors, transactions, autocommit):
        # a connection parked between requests is claimed back first, unless another thread
        # took it meanwhile.
        if self._schemata_parked:
            self._schemata_parked = False
            if not self.schemata_pool().unpark(self.connection, self._schemata_token):
                self.connection = None  # the taker's now: not ours to close
                self._schemata_key = None
            # Most recently used last: the end of a request parks from the end. Only wrappers
            # in the handler's map are parked, and the handler gave each its map.
            aliases = cast(dict[str, Any], self._schemata_aliases)
            aliases[self.alias] = aliases.pop(self.alias, self)
        if self._schemata_handover:
            self._schemata_handover = False
            if self.connection is not None:  # else taken while parked: the pool hands out one
                move = self._schemata_path_move()
                self.connection._schemata_move = move  # its old alias's path is another
                self._schemata_key = move.key
        super().ensure_connection()  # type: ignore[misc]

    def close_if_unusable_or_obsolete(self) -> None:
        # Django's walk at each request's start and end: a parked connection is the pool's
        # to check when its wrapper next uses it, and one handed over was checked by the pool
        # (its get_autocommit() would count as a use).
        if not (self._schemata_parked or self._schemata_handover):
            super().close_if_unusable_or_obsolete()  # type: ignore[misc]

    def schemata_park(self) -> bool:
        """Keep this wrapper's connection until its next use (the end of a request)."""
        key = self._schemata_key
        connection = self.connection
        if (
            key is None
            or connection is None
            or self._schemata_parked
            or self.in_atomic_block
            # pgconn's: connection.info makes an object on every read.
            or connection.pgconn.transaction_status != TransactionStatus.IDLE
        ):
            return False
        # A token per parking: the connection may come back to this pool, and be parked by
        # another wrapper, before this one next looks.
        self._schemata_token = object()
        self._schemata_parked = self.schemata_pool().park(connection, key, self._schemata_token)
        return self._schemata_parked

    def _close(self) -> None:
        # Django's close() calls this only with a connection. One handed over and never used
        # goes back on the schema it is on (the key still says which).
        self._schemata_handover = False
        connection, self.connection = self.connection, None
        key, self._schemata_key = self._schemata_key, None
        if self._schemata_parked:
            self._schemata_parked = False
            if not self.schemata_pool().unpark(connection, self._schemata_token):
                return  # another thread took it
        if key is not None:  # else not the pool's: lent by the testing kit, say
            self.schemata_pool().release(connection, key)


@lru_cache(maxsize=DERIVED_CACHE_SIZE)
def _move(
    schema: Schema, alias: str, database: str, path: str, application_name: str, guarded: bool
) -> Move:
    """The move of a connection to ``schema``'s alias (its statement is built once)."""
    return Move(
        key=path_key(database, path),
        path=path,
        application_name=application_name,
        expected=[schema.name, GUARD_SCHEMA] if guarded else [schema.name],
        # Not a closure over the wrapper: a spare wrapper is one nothing refers to.
        verify=partial(verify_path, schema, alias, database),
    )


def verify_path(schema: Schema, alias: str, database: str, resolved: list[str]) -> None:
    """Refuse a connection whose search path does not resolve to ``schema`` (and the guard):
    ``resolved`` is ``current_schemas(false)``, read on it."""
    current = resolved[0] if resolved else None
    if current != schema.name:
        raise SchemaUnavailable(
            f"The schema {schema.name!r} (database alias {alias!r}) does not exist "
            f"in database {database!r} or its role may not use it "
            f"(current_schema() is {current!r}). Create it with "
            f"'python manage.py manage_schemata', or grant USAGE on it."
        )
    if conf.SHARED_APPS and resolved[1:2] != [GUARD_SCHEMA]:
        raise SchemaUnavailable(
            f"The schema {GUARD_SCHEMA!r} is missing from database {database!r}: without it, "
            f"a table missing from {schema.name!r} would be read from public. Run "
            f"'python manage.py migrate' (it rebuilds {GUARD_SCHEMA!r} when "
            f"SCHEMATA_SHARED_APPS is set)."
        )


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


class SchemaClient:
    """``dbshell`` on a schema alias: psql opens on the schema's search path."""

    connection: Any

    def runshell(self, parameters: list[str]) -> None:
        # psql is started with the environment of this process: give it the path there.
        options = self.connection.settings_dict["OPTIONS"]
        path = f"-c search_path={self.connection._schemata_path}"
        extra = {
            "PGOPTIONS": " ".join(filter(None, [options.get("options"), path])),
            "PGAPPNAME": options.get("application_name"),
        }
        saved = {key: os.environ.get(key) for key in extra}
        os.environ.update({key: str(value) for key, value in extra.items() if value})
        try:
            super().runshell(parameters)  # type: ignore[misc]
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
