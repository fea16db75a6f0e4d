"""A pooled connection's search path: moved with the next statement, and checked first.

A connection the pool hands out to another schema is not moved there at once. It is marked
with a ``Move``, and the next statement sent on it carries the move in front of it, in the same
string and round trip (psycopg's client-side cursors send a string with several statements in
one message, run one after the other)::

    SELECT '"t5"'::regnamespace, '"schemata_guard"'::regnamespace;
    SET search_path = "t5", "schemata_guard", "public";
    SET application_name = 'schemata:t5';
    SELECT ... FROM "shop_item" ...

The first statement fails, and with it the string, when the schema (or the guard) does not
exist: PostgreSQL reads a ``regnamespace`` literal when it analyses the statement, before the
query behind it runs. A schema that exists but that the role may not use is skipped by the
search path like a missing one: its tables do not resolve (the guard's stand-ins stop them when
shared apps put ``public`` on the path), and the move made in a statement of its own
(``settle``) reports it. Plain ``SET`` statements cost the server less than ``set_config()``
calls, and this check less than comparing ``current_schemas()`` in SQL: measured on one
connection over 100 schemas, a move carried this way adds about 25 us of server CPU to a
one-row query, against about 60 us for a ``SELECT`` of ``set_config()`` with that comparison.

PostgreSQL undoes a ``set_config`` with the transaction that made it. The move is therefore
known to hold only once an autocommit statement that carried it succeeded (its implicit
transaction committed); until then every statement carries it again. What cannot share a
string with it moves the connection in a round trip of its own beforehand, outside any
transaction when none has begun: statements other than DML (``VACUUM``, ``CREATE INDEX
CONCURRENTLY`` refuse a transaction block, which a string of statements is; ``COMMIT`` or
``ROLLBACK`` would end it), a string of several statements, ``executemany``, ``COPY``,
``stream``, named cursors, and the first statement of a transaction (psycopg sends its
``BEGIN`` first). In a pipeline every statement is preceded by the move, which stays pending:
nothing there is committed before the pipeline's Sync.

A statement of the caller's own that may change the path (``SET search_path``, ``set_config``,
``SET SCHEMA``, ``RESET ALL``, ``DISCARD ALL``) or make a temporary table (found first on any
path, so it would stand in for the next schema's table of its name), found by a text search of
each ``execute()``, marks the connection. The change holds until the pool takes it back; then
the pool forgets its path, so that the next hand-out moves it, or closes it if it made a
temporary table. Temporary tables made inside a function are not seen.

psycopg's own helpers that make their cursor with a class of their own (``TypeInfo.fetch()``)
do not see a pending move. Inside a transaction opened with psycopg's ``conn.transaction()``
on a connection just handed out, every statement carries the move, so ``SET TRANSACTION``
cannot be its first one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg import Connection
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

#: Moves a connection to another schema and reads back the path as resolved, in one trip.
MOVE_SQL = (
    "SELECT current_schemas(false) FROM set_config('search_path', %s, false) AS p, "
    "set_config('application_name', %s, false) AS a"
)
#: Results of the statements a carried move puts in front of the caller's.
_MOVE_RESULTS = 3
#: First words of the statements a move may precede in the same string: those that run in a
#: transaction block, as a string of several statements does, and cannot end one.
_PREFIXABLE = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE", "MERGE"}
)
_FIRST_WORD = re.compile(r"[\s(]*([A-Za-z]+)")
#: What may change a session's search path: the setting named (``SET``, ``set_config()``,
#: ``RESET``), ``SET SCHEMA``, and resetting every setting.
_PATH_CHANGE = re.compile(
    r"search_path|(?:^|;)\s*(?:(?:reset|discard)\s+all|set\s+(?:session\s+)?schema)\b"
)
#: What makes a temporary table (or view, or sequence): found before any schema's table of its
#: name, it would stand in for that table on whichever schema the connection serves next.
_TEMP_OBJECT = re.compile(
    r"\bcreate\s+(?:(?:global|local)\s+)?temp(?:orary)?\b|\binto\s+temp(?:orary)?\b|\bpg_temp"
)
_CHANGED = "_schemata_session_changed"
#: What a statement of the caller's may have done to its session (see ``session_changed``).
PATH_CHANGED = 1
TEMP_CREATED = 2
_IDLE = TransactionStatus.IDLE
_INTRANS = TransactionStatus.INTRANS


@dataclass(eq=False)
class Move:
    """Where a connection handed out to a schema must be before its next statement."""

    key: str  # the database and search path
    path: str
    application_name: str
    expected: list[str]  # what current_schemas(false) must start with
    verify: Callable[[list[str]], None]  # given current_schemas(false); raises SchemaUnavailable

    def __post_init__(self) -> None:
        # Names are checked identifiers (databases.SCHEMA_NAME_RE): quoted, they are taken as
        # they are, and a name made of digits is not read as an OID.
        checks = ", ".join(f"{_literal(_ident(name))}::regnamespace" for name in self.expected)
        path = ", ".join(_ident(name) for name in self.path.split(","))
        statement = (
            f"SELECT {checks}; SET search_path = {path}; "
            f"SET application_name = {_literal(self.application_name)};\n"
        )
        self.encoded = statement.encode()

    def unavailable(self, error: psycopg.Error) -> bool:
        """Whether ``error``, raised by a statement that carried this move, is its check's."""
        return isinstance(error, pg_errors.InvalidSchemaName) and any(
            _ident(name) in str(error) for name in self.expected
        )


def path_key(database: str, path: str) -> str:
    """What the pool knows a connection by: its database and search path."""
    return f"{database}:{path}"


def _ident(name: str) -> str:
    return f'"{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def pending(connection: Connection[Any]) -> Move | None:
    """The move ``connection`` still needs before its next statement, if any."""
    move: Move | None = getattr(connection, "_schemata_move", None)
    return move


def settle(connection: Connection[Any]) -> None:
    """Move ``connection`` now, with a statement of its own, if a move is pending.

    Outside a transaction the move then holds for good; inside one, it holds until the
    transaction ends, so the next statement carries it again.
    """
    move = pending(connection)
    if move is None:
        return
    # In a pipeline nothing is committed before its Sync, and an error there rolls back every
    # statement since the last one: the move then stays pending, as in a transaction.
    idle = connection.pgconn.transaction_status == _IDLE and connection._pipeline is None
    with _autocommit(connection, idle):
        # A cursor of psycopg's own class: the connection's would carry the move again.
        row = (
            psycopg.ClientCursor(connection)
            .execute(MOVE_SQL, [move.path, move.application_name])
            .fetchone()
        )
    move.verify(row[0] if row else [])
    if idle:
        connection._schemata_move = None  # type: ignore[attr-defined]


@contextmanager
def _autocommit(connection: Connection[Any], idle: bool) -> Iterator[None]:
    # Not yet in a transaction, but psycopg would open one for this statement.
    if idle and not connection.autocommit:
        connection.autocommit = True
        try:
            yield
        finally:
            # A connection that broke meanwhile refuses it: its own error is the one to see.
            with suppress(psycopg.Error):
                connection.autocommit = False
    else:
        yield


class PathCursorMixin:
    """Cursor of a pooled connection: every way of sending SQL moves the connection first."""

    _conn: Connection[Any]
    _query: Any
    #: Whether the cursor binds parameters client-side, so sends a string of statements.
    _simple = True

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        connection = self._conn
        change = _session_change(query)
        if change:
            # Holds on this connection until the pool takes it back (SchemaPool.release).
            state = connection.__dict__
            state[_CHANGED] = max(change, state.get(_CHANGED, 0))
        move: Move | None = getattr(connection, "_schemata_move", None)  # pending(), inlined
        if move is None:
            return super().execute(query, params, **kwargs)  # type: ignore[misc]
        if connection._pipeline is not None:
            settle(connection)  # before every statement of the pipeline (see settle)
            return super().execute(query, params, **kwargs)  # type: ignore[misc]
        status = connection.pgconn.transaction_status
        if status not in (_IDLE, _INTRANS):
            # A failed transaction runs nothing but its rollback (a savepoint's, say): the
            # move waits for the next statement.
            return super().execute(query, params, **kwargs)  # type: ignore[misc]
        word = _first_word(query) if isinstance(query, str) else ""
        if (
            word not in _PREFIXABLE
            or ";" in query  # only the statement itself can then end the transaction
            or not self._simple
            or (status == _IDLE and not connection.autocommit)
        ):
            settle(connection)
            return super().execute(query, params, **kwargs)  # type: ignore[misc]
        # Added to the statement as sent (_execute_send), not to the query: psycopg parses a
        # query once and caches it by its text, which would then differ for every schema.
        # Psycopg's two methods are shadowed for this statement only: other statements run
        # them without a frame of ours.
        shadowed = self.__dict__
        shadowed["_execute_send"] = partial(self._prefixed_send, move.encoded)
        shadowed["_set_results"] = self._own_results
        try:
            super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as error:
            if move.unavailable(error):
                _explain(connection, move, str(error))
            raise
        finally:
            del shadowed["_execute_send"], shadowed["_set_results"]
            _unprefix(self._query, move.encoded)
        if status == _IDLE:  # autocommit: the statement's implicit transaction committed
            connection._schemata_move = None  # type: ignore[attr-defined]
        return self

    def _own_results(self, results: list[Any]) -> None:
        # The caller sees its own statement's result only, as if sent alone.
        type(self)._set_results(self, results[_MOVE_RESULTS:])  # type: ignore[attr-defined]

    def _prefixed_send(self, prefix: bytes, query: Any, **kwargs: Any) -> None:
        query.query = prefix + query.query
        type(self)._execute_send(self, query, **kwargs)  # type: ignore[attr-defined]

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        settle(self._conn)
        return super().executemany(*args, **kwargs)  # type: ignore[misc]

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        settle(self._conn)
        return super().copy(*args, **kwargs)  # type: ignore[misc]

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        settle(self._conn)
        return super().stream(*args, **kwargs)  # type: ignore[misc]


class PathServerCursor(psycopg.ServerCursor[Any]):
    """Named cursor of a pooled connection (``connection.cursor(name)``): moved first."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        settle(self._conn)
        return super().execute(query, params, **kwargs)


def _unprefix(sent: Any, prefix: bytes) -> None:
    """Take the move off the statement psycopg keeps as sent: it is what Django logs
    (``connection.queries``), failed or not. None, or another, when it failed before."""
    if sent is not None and sent.query.startswith(prefix):
        sent.query = sent.query[len(prefix) :]


def _session_change(query: Any) -> int:
    """What ``query`` may do to its session that outlives it: ``TEMP_CREATED``,
    ``PATH_CHANGED`` or 0."""
    text = (query if isinstance(query, str) else str(query)).lower()
    # Words that any match has: a test that costs a tenth of the search.
    if "temp" in text and _TEMP_OBJECT.search(text):
        return TEMP_CREATED
    if "search_path" in text or "reset" in text or "discard" in text or "schema" in text:
        return PATH_CHANGED if _PATH_CHANGE.search(text) else 0
    return 0


def session_changed(connection: Connection[Any], forget: bool = False) -> int:
    """What statements run on ``connection`` may have done to its session (since the last call
    with ``forget``): ``TEMP_CREATED``, ``PATH_CHANGED`` or 0."""
    state = connection.__dict__
    changed: int = state.pop(_CHANGED, 0) if forget else state.get(_CHANGED, 0)
    return changed


def _first_word(query: str) -> str:
    match = _FIRST_WORD.match(query)
    return match[1].upper() if match else ""


def _explain(connection: Connection[Any], move: Move, message: str) -> None:
    """Raise ``SchemaUnavailable`` for a carried move whose check failed with ``message``."""
    if connection.pgconn.transaction_status == _IDLE:
        # What the path resolves to, as a move of its own reads it. If the schema came back
        # meanwhile, this returns and the caller raises the original error.
        settle(connection)
    else:  # a failed transaction runs nothing more: the message names what is missing
        schema = move.expected[0]
        move.verify([] if _ident(schema) in message else [schema])


_cursor_classes: dict[type[Any], type[Any]] = {}


def path_cursor(base: type[Any]) -> type[Any]:
    """``base`` (the cursor class Django chose) with ``PathCursorMixin``."""
    cls = _cursor_classes.get(base)
    if cls is None:
        # The statement is prefixed where psycopg sends it: a release that renames the method
        # must fail here, at the first connection, not move nothing.
        if not all(hasattr(base, name) for name in ("_execute_send", "_set_results")):
            raise ImproperlyConfigured(
                f"psycopg {psycopg.__version__}'s cursors have no _execute_send() or "
                f"_set_results(): this "
                f"psycopg release is not one django-schemata supports."
            )
        cls = _cursor_classes[base] = type(
            f"Path{base.__name__}",
            (PathCursorMixin, base),
            {"_simple": issubclass(base, psycopg.ClientCursor)},
        )
    return cls
