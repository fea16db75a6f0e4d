"""``django.db.connections`` for schema aliases: per-thread bookkeeping, and the guard."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from asgiref.local import Local
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionHandler

from schemata.backend import engine_wrapper
from schemata.conf import conf
from schemata.databases import SchemataDatabases
from schemata.exceptions import TransactionMismatch
from schemata.paths import path_key

#: Unused schema wrappers a thread keeps, to serve other schemas without making new ones.
SPARE_WRAPPERS = 4


class _ThreadState:
    """What the handler keeps per thread (per asgiref context, like Django's connections)."""

    __slots__ = ("aliases", "spare")

    def __init__(self) -> None:
        # The schema aliases with a connection object, oldest use first.
        self.aliases: dict[str, BaseDatabaseWrapper] = {}
        # Unused schema wrappers, ready to serve another schema of their base (making one
        # costs more than a request's own work).
        self.spare: list[BaseDatabaseWrapper] = []


class SchemataConnectionHandler(ConnectionHandler):
    """``django.db.connections``, aware of the schema aliases that ``DATABASES`` does not list.

    Django finds open connections by walking every configured alias (three times per
    request). Schema aliases are not listed, so this handler remembers, per thread, the ones
    it created a connection object for, and ``all()`` returns those as well.
    """

    _schemata_local: Local
    _connections: Local  # Django's thread-local storage of the connection objects

    def _schema_aliases(self) -> dict[str, BaseDatabaseWrapper]:
        """This thread's schema aliases that have a connection object, oldest use first, with
        that object (Django's walks read it from here, without a lookup per alias)."""
        return self._thread_state().aliases

    def _thread_state(self) -> _ThreadState:
        # One thread-local lookup for both: each costs about a microsecond.
        try:
            state: _ThreadState = self._schemata_local.state
        except AttributeError:
            state = self._schemata_local.state = _ThreadState()
        return state

    def _is_schema_alias(self, alias: str) -> bool:
        databases = self.settings
        return isinstance(databases, SchemataDatabases) and alias in databases.schemas

    def create_connection(self, alias: str) -> BaseDatabaseWrapper:
        if not self._is_schema_alias(alias):
            return super().create_connection(alias)
        settings, path = cast(SchemataDatabases, self.settings).settings_and_path(alias)
        wrapper = engine_wrapper(settings["ENGINE"])
        state = self._thread_state()
        aliases = state.aliases
        conn = None
        if not settings.get("CONN_HEALTH_CHECKS"):  # else the pool checks every hand-out
            conn = self._hand_over(aliases, wrapper, settings, alias, path)
        if conn is None:
            spare = state.spare
            for i, conn in enumerate(spare):
                if type(conn) is wrapper and conn.retarget(settings, alias, path):  # type: ignore[attr-defined]
                    del spare[i]
                    break
            else:
                conn = wrapper(settings, alias)
                # The references a wrapper has when nobody but this handler holds it (its own
                # parts point back to it): more, at the end of a request, and it is not reused.
                conn._schemata_refs = sys.getrefcount(conn)  # type: ignore[attr-defined]
        aliases[alias] = conn
        # Its thread's map, kept by the wrapper: every use reorders it (one thread-local
        # lookup less per request).
        conn._schemata_aliases = aliases  # type: ignore[attr-defined]
        return conn

    def _hand_over(
        self,
        aliases: dict[str, BaseDatabaseWrapper],
        cls: type[BaseDatabaseWrapper],
        settings: dict[str, Any],
        alias: str,
        path: str,
    ) -> BaseDatabaseWrapper | None:
        """One of this thread's wrappers parked between requests, made to serve ``alias``
        with its connection, which moves there with its next statement.

        A thread that serves another schema at each request (many tenants, a pool at its cap)
        would otherwise give a parked connection back to the pool and take one from it, through
        Django's ``close()`` and ``connect()``, a new connection object and the pool's lock
        twice. The connection chosen is the one the pool would move (its slot's, else the
        least recently used); the pool may still prefer to hand out another (see
        ``SchemaPool.hand_over``).
        """
        schema = cast(SchemataDatabases, self.settings).schemas[alias]
        key = path_key(settings["NAME"], path)
        chosen: str | None = None
        slot = -1
        slots: dict[int, int] = {}
        for name, conn in aliases.items():  # the least recently used first
            if (
                type(conn) is cls
                and conn._schemata_parked  # type: ignore[attr-defined]
                and conn.schema.base == schema.base  # type: ignore[attr-defined]
                and conn.settings_dict["NAME"] == settings["NAME"]  # a move keeps its database
            ):
                if chosen is None:
                    chosen = name
                    pool = conn.schemata_pool()  # type: ignore[attr-defined]
                    slot = pool.slot(key)
                    slots = pool.slots
                if slots.get(id(conn.connection)) == slot:
                    chosen = name
                    break
        if chosen is None:
            return None
        conn = aliases[chosen]
        # Somebody else holding the wrapper (a variable, a query capture) still expects it to
        # serve its alias. Held here: by the map and by Django's thread-local storage.
        if not _reusable(conn, held=2):
            return None
        pool = conn.schemata_pool()  # type: ignore[attr-defined]
        outcome = pool.hand_over(conn.connection, conn._schemata_token, key)  # type: ignore[attr-defined]
        if outcome is None:
            return None  # still parked: the pool hands out another
        conn._schemata_parked = False  # type: ignore[attr-defined]
        if not outcome:
            # Taken by another thread, or ended by the server: not ours to give.
            conn.connection = None
            conn._schemata_key = None  # type: ignore[attr-defined]
            return None
        delattr(self._connections, chosen)  # del self[chosen], with the map at hand
        del aliases[chosen]
        conn.retarget(settings, alias, path)  # type: ignore[attr-defined]
        conn.schemata_take_over()  # type: ignore[attr-defined]
        return conn

    def __setitem__(self, alias: str, conn: BaseDatabaseWrapper) -> None:
        super().__setitem__(alias, conn)
        if self._is_schema_alias(alias):
            aliases = self._schema_aliases()
            aliases[alias] = conn
            conn._schemata_aliases = aliases  # type: ignore[attr-defined]

    def __delitem__(self, alias: str) -> None:
        super().__delitem__(alias)
        self._schema_aliases().pop(alias, None)

    def all(self, initialized_only: bool = False) -> list[BaseDatabaseWrapper]:
        # Called as Django calls it: code that replaces all() (Django's own tests do) may not
        # take the keyword.
        if initialized_only:
            # Django's reads each listed alias twice from its thread-local storage (hasattr,
            # then getattr): once here. Three such walks a request.
            local = self._connections
            listed: Sequence[BaseDatabaseWrapper] = [
                conn for alias in self if (conn := getattr(local, alias, None)) is not None
            ]
        else:
            listed = super().all()
        return [*listed, *self._schema_aliases().values()]

    def close_all(self) -> None:
        """Close every connection of this thread, and the idle ones of the schema pools."""
        from schemata.pool import close_idle

        super().close_all()
        close_idle()

    def discard_schema_connections(self) -> None:
        """Close and forget this thread's schema connections, except those in a transaction."""
        for alias, conn in list(self._schema_aliases().items()):
            if not conn.in_atomic_block:
                conn.close()
                del self[alias]

    def release_idle(self, except_alias: str | None = None, park: bool = False) -> None:
        """Give this thread's schema connections back to the pool, except those in a
        transaction, and forget the connection objects nobody else holds on to.

        With ``park`` (the end of a request), the connections used keep their wrappers until
        their next use instead, up to the pool's ``max_size`` per thread, the least recently
        used given back first; another thread at the pool's cap may take a parked one.
        """
        state = self._thread_state()
        aliases = state.aliases
        limit = -1 if park else 0  # -1: the cap of the first wrapper's pool, read once below
        parked = 0
        # Names only: a list of the wrappers would hold references that _reusable counts.
        for alias in reversed(list(aliases)):  # the most recently used first
            if alias == except_alias:
                continue
            conn = aliases[alias]
            if conn.in_atomic_block:
                continue
            if limit < 0:
                limit = conn.schemata_pool().max_size  # type: ignore[attr-defined]
            if parked < limit and (
                conn._schemata_parked or conn.schemata_park()  # type: ignore[attr-defined]
            ):
                parked += 1
                continue
            conn.close()  # back to the pool, whatever CONN_MAX_AGE
            # Keep a query capture or an execute wrapper of the caller's own.
            if _plain(conn):
                del self[alias]
                spare = state.spare
                if len(spare) < SPARE_WRAPPERS and _reusable(conn):
                    spare.append(conn)


def _plain(conn: BaseDatabaseWrapper) -> bool:
    """Whether ``conn`` has no query capture or execute wrapper of a caller's own."""
    return not conn.force_debug_cursor and all(
        wrapper is atomic_guard for wrapper in conn.execute_wrappers
    )


def _reusable(conn: BaseDatabaseWrapper, held: int = 0) -> bool:
    """Whether nothing but its own parts, ``held`` references the handler keeps and the
    caller's variable refer to ``conn``: a wrapper somebody kept must keep serving its alias,
    so only those are reused."""
    baseline: int | None = getattr(conn, "_schemata_refs", None)
    if baseline is None or not _plain(conn):
        return False
    # Django's error wrapper, made on first use, points back to the connection too.
    expected = baseline + ("wrap_database_errors" in conn.__dict__) + held
    return sys.getrefcount(conn) == expected + 1  # + this function's argument


def install() -> None:
    """Give ``django.db.connections`` the schema-aware behaviour (idempotent)."""
    if not isinstance(connections, SchemataConnectionHandler):
        # Every module holds this very object (`from django.db import connections`), and
        # Django has no hook for the handler's class: it is given the subclass in place.
        connections._schemata_local = Local(connections.thread_critical)  # type: ignore[attr-defined]
        connections.__class__ = SchemataConnectionHandler


def handler() -> SchemataConnectionHandler:
    """``django.db.connections``, given its class by ``install()`` before any of the receivers
    below is connected (the app's ``ready()``)."""
    return cast(SchemataConnectionHandler, connections)


def release_idle_connections(**kwargs: Any) -> None:
    """``request_finished`` receiver: every request gives its schema connections back,
    but for the last one used, parked for the thread's next request."""
    handler().release_idle(park=True)


def reclaim_idle(except_alias: str) -> None:
    """Called by a pool at its cap: give back this thread's other idle schema connections."""
    handler().release_idle(except_alias=except_alias)


def discard_on_setting_change(setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: a schema connection's settings are fixed when it is made."""
    if setting == "DATABASES":
        # Django caches DATABASES in the handler for good (BaseConnectionHandler.settings).
        connections.__dict__.pop("settings", None)
        connections._settings = None  # type: ignore[attr-defined]
    if setting == "DATABASES" or setting.startswith("SCHEMATA_"):
        from schemata.pool import close_pools

        handler().discard_schema_connections()
        close_pools()  # their connections carry paths and caps of the old settings


def atomic_guard(
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
