"""One bounded pool of server connections per base database, shared by all its schema aliases.

Django gives every alias its own connection per thread, so a process that served 300 schemas
holds 300 connections per thread. Here a schema alias borrows a physical connection when it
connects and gives it back when Django closes it (and at the end of every request, whatever
``CONN_MAX_AGE``), so a process never holds more than ``SCHEMATA_POOL["max_size"]`` of them.

A connection is handed out, in order of preference:

1. idle and already on the wanted schema: no statement at all;
2. newly opened, while the pool is under its cap, and set on the path and verified with the
   same statement as a move (a path in the libpq ``options`` startup parameter would be refused
   or dropped by PgBouncer before 1.20): the pool fills up to ``max_size`` connections, each
   left on the schema it last served, like a cache of the busiest schemas;
3. at the cap, parked by another thread between two of its requests (see ``park``) and on the
   wanted schema: no statement either;
4. idle on another schema (at the cap with none idle: parked by another thread): moved, with
   the check that the path resolves to the schema, in front of its next statement, in the same
   round trip (``schemata/paths.py``). Each
   connection has a slot, and each schema the slot its name hashes to: the connection of the
   schema's slot is moved if it is free, else the least recently used. A server process keeps
   the catalog entries of every table it has read, for good: with slots, each of the pool's
   server processes reads the tables of a share of the schemas only, instead of all of them
   (``benchmarks/affinity.py``: 1,000 schemas of 5 tables, 10 connections, 20,000 requests:
   9.7 MiB instead of 40.8 MiB per server process, and 15-30% less time per request).

A thread at the cap that parked connections between its requests moves one of them itself,
with the wrapper that holds it (``hand_over``), when the pool would only move one anyway.

A connection whose socket has something to read while idle was terminated by the server
(restart, ``pg_terminate_backend``): it is dropped instead of being handed out.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import Connection
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from schemata.exceptions import ConnectionPoolExhausted
from schemata.paths import TEMP_CREATED, Move, session_changed, settle


@dataclass
class Stats:
    """What a pool did, for tests and benchmarks."""

    kept: int = 0  # handed out on the schema it was already on: no statement
    moved: int = 0  # handed out to another schema: moved with its next statement
    opened: int = 0  # newly opened
    discarded: int = 0  # found broken, or evicted
    waited: int = 0  # hand-outs that had to wait for a connection
    parked: int = 0  # claimed back by the wrapper that parked it between requests
    taken: int = 0  # parked connections another thread took at the cap


@dataclass
class _Idle:
    connection: Connection[Any]
    key: str | None  # the database and search path it is on; None: unknown, move it first
    owner: object = None  # for a parked connection: the parking's token


class SchemaPool:
    """The physical connections of one base database, in one process."""

    def __init__(self, base: str, max_size: int, timeout: float, move: bool) -> None:
        self.base = base
        self.max_size = max_size
        self.timeout = timeout
        self.move = move
        self.stats = Stats()
        self.closed = False  # set when settings change: a new pool takes over
        # A plain lock: entered without a Python frame, at every hand-out, park and claim-back.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Least recently given back first; a connection appears here only while idle.
        self._idle: OrderedDict[int, _Idle] = OrderedDict()
        self._in_use: dict[int, Connection[Any]] = {}
        # In use by nobody right now, but left with a thread's wrapper between two requests:
        # that thread's next request on the schema needs no hand-out; any thread at the cap may
        # take one (oldest first). Each is in _in_use too.
        self._parked: OrderedDict[int, _Idle] = OrderedDict()
        self._waiting = 0
        self._opening = 0
        # Each connection's slot, 0 to max_size - 1 (see the module's docstring).
        self._slots: dict[int, int] = {}

    @property
    def size(self) -> int:
        """Server connections this pool holds: idle, in use and being opened."""
        return len(self._idle) + len(self._in_use) + self._opening

    def acquire(
        self,
        move: Move,
        open_new: Callable[[], Connection[Any]],
        reclaim: Callable[[], object],
        health_check: bool = False,
        path_on_open: bool = True,
    ) -> Connection[Any]:
        """Hand out a connection on ``move.path``, verified or to be moved and verified with
        its next statement; wait up to the timeout. ``reclaim`` is called once, at the cap,
        before waiting."""
        key = move.key
        deadline = time.monotonic() + self.timeout
        reclaimed = False
        while True:
            with self._lock:
                kept = self._take(key)
                candidate: _Idle | None = None
                if kept is not None:
                    self.stats.kept += 1
                    action = "keep"
                elif self.size < self.max_size:
                    # Under the cap a schema gets a connection of its own: the pool then keeps
                    # up to max_size schemas' connections ready, and moves only past that.
                    self._opening += 1
                    action = "open"
                elif (ident := self._parked_on(key)) is not None:
                    # Another thread's parked connection already on this schema: no statement,
                    # better than moving an idle one.
                    kept = self._parked.pop(ident).connection
                    self.stats.taken += 1
                    self.stats.kept += 1
                    action = "keep"
                elif self._idle and self.move:
                    candidate = self._idle.pop(self._in_slot(self._idle, key))
                    self._in_use[id(candidate.connection)] = candidate.connection
                    action = "move"
                elif self._idle:  # connections cannot move: replace the least recent one
                    self._discard(self._idle.popitem(last=False)[1].connection)
                    self._opening += 1
                    action = "open"
                elif self._parked:
                    # The parked connection in the schema's slot, else the one parked longest
                    # ago; _move checks it, and opens another instead if the server ended it.
                    candidate = self._parked.pop(self._in_slot(self._parked, key))
                    self.stats.taken += 1
                    if not self.move:
                        self._in_use.pop(id(candidate.connection), None)
                        self._discard(candidate.connection)
                        self._opening += 1
                        candidate = None
                        action = "open"
                    else:
                        action = "move"
                elif not reclaimed:
                    action = "reclaim"
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ConnectionPoolExhausted(
                            f"No connection to database alias {self.base!r} came free within "
                            f"{self.timeout}s: this process holds all "
                            f"SCHEMATA_POOL['max_size'] = {self.max_size} of them, in use. "
                            f"Raise it (within the server's max_connections) or "
                            f"SCHEMATA_POOL['timeout'], or release connections sooner."
                        )
                    self.stats.waited += 1
                    self._waiting += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiting -= 1
                    continue
            if kept is not None:
                # Checked with the lock released: poll() lets other threads run, which must
                # not find the pool locked meanwhile. CONN_HEALTH_CHECKS: a round trip too.
                if _terminated(kept) or (health_check and not _responds(kept)):
                    self._drop(kept, "kept")
                    continue
                return kept
            if action == "reclaim":
                # This thread may hold idle schema connections of its own (a script looping
                # over schemas with persistent connections): give those back first.
                reclaimed = True
                reclaim()
            elif candidate is not None:
                moved = self._move(candidate.connection, move, health_check)
                if moved is not None:
                    return moved
            else:
                return self._open(open_new, move, path_on_open)

    def slot(self, key: str) -> int:
        """The slot of the schema on ``key``."""
        # crc32, not hash(): the same in every process, so tests can tell which slot is whose.
        return zlib.crc32(key.encode()) % self.max_size

    def _in_slot(self, connections: OrderedDict[int, _Idle], key: str) -> int:
        """Which of ``connections`` (idle or parked, oldest first) to move to ``key``: the
        one in its slot, else the oldest."""
        slot = self.slot(key)
        slots = self._slots
        return next((i for i in connections if slots.get(i) == slot), next(iter(connections)))

    def _parked_on(self, key: str) -> int | None:
        """The most recently parked connection on ``key``, if any."""
        return next((i for i, p in reversed(self._parked.items()) if p.key == key), None)

    def _idle_on(self, key: str) -> int | None:
        """The idle connection most recently given back on ``key``, if any."""
        return next((i for i, idle in reversed(self._idle.items()) if idle.key == key), None)

    def _take(self, key: str) -> Connection[Any] | None:
        """An idle connection on ``key``, now in use; the caller checks that it is alive."""
        ident = self._idle_on(key)
        if ident is None:
            return None
        connection = self._idle.pop(ident).connection
        self._in_use[ident] = connection
        return connection

    def _drop(
        self,
        connection: Connection[Any],
        counted: Literal["kept", "moved", "parked"] | None = None,
    ) -> None:
        """Discard a connection taken for a caller that cannot have it (the server ended it, or
        its first statement failed), and take back its count in ``stats``, if counted."""
        with self._lock:
            if counted is not None:
                setattr(self.stats, counted, getattr(self.stats, counted) - 1)
            self._in_use.pop(id(connection), None)
            self._discard(connection)

    def _move(
        self, connection: Connection[Any], move: Move, health_check: bool
    ) -> Connection[Any] | None:
        try:
            if _terminated(connection):
                raise pg_errors.OperationalError("terminated while idle")
            connection._schemata_move = move  # type: ignore[attr-defined]
            if health_check:  # moved now: the round trip proves it alive, as a ping would
                settle(connection)
        except pg_errors.Error:
            self._drop(connection)
            return None
        except BaseException:
            self.release(connection, None)  # on an unusable path: moved before its next use
            raise
        with self._lock:
            self.stats.moved += 1
        return connection

    def _open(
        self, open_new: Callable[[], Connection[Any]], move: Move, path_on_open: bool
    ) -> Connection[Any]:
        try:
            connection = open_new()
            connection.autocommit = True  # so that the check below opens no transaction
        except BaseException:
            with self._lock:
                self._opening -= 1
                self._cond.notify()
            raise
        with self._lock:
            self._opening -= 1
            self._in_use[id(connection)] = connection
            self.stats.opened += 1
            # The key's slot if no connection has it, else the first free one: a pool at its
            # cap has one connection per slot.
            taken = set(self._slots.values())
            slot = self.slot(move.key)
            if slot in taken:
                slot = next((i for i in range(self.max_size) if i not in taken), slot)
            self._slots[id(connection)] = slot
        try:
            if path_on_open:  # no startup parameter that a pooler in between could refuse
                connection._schemata_move = move  # type: ignore[attr-defined]
                settle(connection)
            else:  # the path came with the connection (its startup options)
                row = connection.execute("SELECT current_schemas(false)").fetchone()
                move.verify(row[0] if row else [])
        except BaseException:
            self._drop(connection)
            raise
        return connection

    def park(self, connection: Connection[Any], key: str, owner: object) -> bool:
        """Leave ``connection`` with ``owner`` (its wrapper's token for this parking) until
        its next use; say whether it may (not while another thread waits for one)."""
        if session_changed(connection):
            return False  # given back instead (see release)
        with self._lock:
            ident = id(connection)
            if self._waiting or self.closed or ident not in self._in_use:
                return False
            self._parked[ident] = _Idle(connection, key, owner=owner)
            return True

    @property
    def slots(self) -> dict[int, int]:
        """The slot of each connection, by ``id()`` (see the module's docstring); read-only."""
        return self._slots

    def hand_over(self, connection: Connection[Any], owner: object, key: str) -> bool | None:
        """Whether ``owner``, which parked ``connection``, may move it to ``key`` itself
        instead of giving it back and taking one.

        ``None``: no, the pool would rather hand out another (connections do not move; under
        its cap it opens one; an idle or parked connection already on ``key`` needs no move),
        and it stays parked.
        ``False``: no, it is not ``owner``'s any more (another thread took it, or the server
        ended it and it was dropped).
        """
        with self._lock:
            ident = id(connection)
            idle = self._parked.get(ident)
            if idle is None or idle.owner is not owner:
                return False
            if (
                not self.move  # a connection per database (PgBouncer's transaction mode)
                or self.size < self.max_size
                or self._idle_on(key) is not None
                or self._parked_on(key) is not None
            ):
                return None
            del self._parked[ident]
            self.stats.moved += 1
        if _terminated(connection):  # with the lock released (see acquire)
            self._drop(connection, "moved")
            return False
        return True

    def unpark(self, connection: Connection[Any], owner: object) -> bool:
        """Whether ``owner``, which parked ``connection``, may use it again: not when another
        thread took it meanwhile (and perhaps parked it in turn), nor when the server ended it."""
        with self._lock:
            idle = self._parked.get(id(connection))
            if idle is None or idle.owner is not owner:
                return False  # taken: the taker owns it now
            del self._parked[id(connection)]
            self.stats.parked += 1
        if _terminated(connection):  # with the lock released (see acquire)
            self._drop(connection, "parked")
            return False
        return True

    def release(self, connection: Connection[Any], key: str | None) -> None:
        """Take back ``connection``, last on ``key`` (``None``: unknown path)."""
        changed = session_changed(connection, forget=True)
        if changed:
            key = None  # the caller's own SET: moved and verified before its next hand-out
        # The caller's temporary table would stand in for the next schema's: closed.
        usable = changed != TEMP_CREATED and not connection.closed and not connection.broken
        if usable and connection.pgconn.transaction_status != TransactionStatus.IDLE:
            try:
                connection.rollback()
            except pg_errors.Error:
                usable = False
        if usable and not connection.autocommit:
            connection.autocommit = True
        with self._lock:
            ident = id(connection)
            if self._in_use.pop(ident, None) is None:
                # A pool made anew since (settings changed) does not count it: close it,
                # unless a forked child inherited it from its parent.
                if not any(connection is inherited for inherited in _inherited):
                    self._discard(connection)
                return
            if usable and not self.closed:
                self._idle[ident] = _Idle(connection, key)
                self._idle.move_to_end(ident)
                self._cond.notify()
            else:
                self._discard(connection)

    def _discard(self, connection: Connection[Any]) -> None:
        """Close a connection the pool no longer counts (call with the lock held)."""
        self.stats.discarded += 1
        self._slots.pop(id(connection), None)
        self._cond.notify()
        with contextlib.suppress(Exception):  # already broken: nothing to give back
            connection.close()

    def close(self) -> None:
        """Close every idle and parked connection; those in use are closed when given back."""
        with self._lock:
            while self._idle:
                self._discard(self._idle.popitem()[1].connection)
            while self._parked:
                connection = self._parked.popitem()[1].connection
                self._in_use.pop(id(connection), None)
                self._discard(connection)

    def forget(self) -> None:
        """In a forked child: drop every connection without a word to the server.

        They belong to the parent; closing them here would end the parent's sessions.
        """
        with self._lock:
            _inherited.extend(idle.connection for idle in self._idle.values())
            _inherited.extend(self._in_use.values())
            self._idle.clear()
            self._in_use.clear()
            self._parked.clear()
            self._slots.clear()
            self._opening = 0


def _responds(connection: Connection[Any]) -> bool:
    try:
        connection.execute("SELECT 1")
    except pg_errors.Error:
        return False
    return True


def _terminated(connection: Connection[Any]) -> bool:
    """Whether the server said something to an idle connection: only a goodbye, here."""
    if connection.closed or connection.broken:
        return True
    # An open connection has a descriptor; poll() reports one that went bad (POLLNVAL).
    return _readable(connection.fileno())


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or was hung up on), without waiting."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows has no poll()
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    # Not select(): it refuses descriptors from 1024 up, which a busy process reaches.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


_pools: dict[str, SchemaPool] = {}
_pools_lock = threading.Lock()
#: Connections of a parent process, kept alive (never closed) in a forked child.
_inherited: list[Connection[Any]] = []


def get_pool(base: str, max_size: int, timeout: float, move: bool) -> SchemaPool:
    """The pool of ``base`` in this process, created on first use."""
    pool = _pools.get(base)
    if pool is None:
        with _pools_lock:
            pool = _pools.setdefault(base, SchemaPool(base, max_size, timeout, move))
    return pool


def close_idle() -> None:
    """Close the idle connections of every pool; the pools stay, as do connections in use."""
    for pool in list(_pools.values()):
        pool.close()


def close_pools() -> None:
    """Close the idle connections of every pool (at exit, and when settings change)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.closed = True
        pool.close()


def _forget_pools() -> None:
    for pool in _pools.values():
        pool.closed = True
        pool.forget()
    _pools.clear()


atexit.register(close_pools)
os.register_at_fork(after_in_child=_forget_pools)
