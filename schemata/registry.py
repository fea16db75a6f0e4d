"""This process's copy of the tenants registered at run time (``schemata.models``).

Loaded on first use and kept in memory, so a known host costs no SQL. Every change of tenants
or domains bumps ``Revision`` in its own transaction, so one primary-key read tells whether the
copy is current:

- a lookup that finds its host or name reads the revision when the copy is older than
  ``SCHEMATA_TENANT_REFRESH`` seconds (once per period per process, not per request), and
  reloads if it moved: a removed tenant stops being served within that bound;
- a lookup that finds nothing reads the revision (a tenant may have been made a moment ago by
  another process), at most ``SCHEMATA_TENANT_MISS_RATE`` times per second per process; every
  other miss in between is answered from the copy. A flood of unknown hosts thus costs a
  bounded number of queries, whatever their number.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.db import connections, transaction
from django.db.utils import ProgrammingError

from schemata.conf import conf
from schemata.databases import (
    DEFAULT_BASE,
    Schema,
    base_problem,
    domain_problem,
    normalize_host,
    schema_name_problem,
)

#: Reads the revision; no row (never bumped, or flushed by a test) reads as 0.
REVISION_SQL = "SELECT coalesce((SELECT number FROM schemata_revision WHERE id = 1), 0)"
#: The revision and every tenant with its domains, in one snapshot.
LOAD_SQL = (
    "SELECT r.number, t.schema_name, t.config, d.domain, t.database "
    f"FROM ({REVISION_SQL} AS number) r "
    "LEFT JOIN schemata_tenant t ON true LEFT JOIN schemata_domain d ON d.tenant_id = t.id "
    "ORDER BY t.schema_name, d.id"
)
#: Bumps the revision to a number never used before: the id's sequence is not rolled back,
#: and a test's flush does not restart it.
BUMP_SQL = (
    "INSERT INTO schemata_revision (id, number) "
    "VALUES (1, nextval(pg_get_serial_sequence('schemata_revision', 'id'))) "
    "ON CONFLICT (id) DO UPDATE SET number = EXCLUDED.number"
)


@dataclass(frozen=True)
class Snapshot:
    """The run-time tenants as of one revision; replaced whole, never changed."""

    revision: int | None  # None: the tables do not exist (not migrated yet)
    database: str
    by_name: Mapping[str, Schema] = field(default_factory=dict)
    by_host: Mapping[str, Schema] = field(default_factory=dict)


@dataclass
class Stats:
    """What the registry asked the database, for tests and benchmarks."""

    checks: int = 0  # revision reads
    loads: int = 0  # full reads of the tenants


class Registry:
    """Host -> ``Schema`` and name -> ``Schema`` for run-time tenants, in this process."""

    def __init__(self) -> None:
        self.stats = Stats()
        self._snapshot: Snapshot | None = None
        self._checked = 0.0  # monotonic time of the last revision read
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Schemas being created by this process, known by name (not host) until registered.
        self.provisional: dict[str, Schema] = {}

    def schema_for_host(self, host: str) -> Schema | None:
        """The run-time tenant served at ``host`` (normalized), or ``None``."""
        if not conf.RUNTIME_TENANTS:
            return None
        snapshot = self._fresh()
        schema = snapshot.by_host.get(host)
        if schema is None and self._missed():
            schema = self._snapshot_or_empty().by_host.get(host)
        return schema

    def schema_named(self, name: str, refresh: bool = False) -> Schema | None:
        """The run-time tenant called ``name``, or ``None``; with ``refresh``, from a copy no
        older than ``SCHEMATA_TENANT_REFRESH``."""
        if name in self.provisional:
            return self.provisional[name]
        if not conf.RUNTIME_TENANTS:
            return None
        snapshot = self._fresh() if refresh else self._snapshot_or_empty()
        schema = snapshot.by_name.get(name)
        if schema is None and self._missed():
            schema = self._snapshot_or_empty().by_name.get(name)
        return schema

    def schemas(self) -> dict[str, Schema]:
        """Every run-time tenant by name, as the database has them now (one query or two)."""
        if not conf.RUNTIME_TENANTS:
            return {}
        self.sync()
        return dict(self._snapshot_or_empty().by_name)

    def sync(self) -> None:
        """Bring the copy up to date now (one query, two if it changed)."""
        if not self._busy():
            with self._lock:
                self._check()

    def clear(self) -> None:
        """Forget the copy: the next lookup loads the tenants again."""
        with self._lock:
            self._snapshot = None
            self._checked = 0.0

    def invalidate(self) -> None:
        """Read the revision at the next lookup (this process changed the tenants)."""
        self._checked = 0.0

    def _busy(self) -> bool:
        """Whether this thread is reading the tenants: a lookup made meanwhile (from a
        ``connection_created`` receiver, say) is answered from memory."""
        return bool(getattr(self._local, "busy", False))

    def _snapshot_or_empty(self) -> Snapshot:
        snapshot = self._snapshot
        database = _database()
        if (snapshot is None or snapshot.database != database) and not self._busy():
            # Never loaded, or loaded from another database (the test runner renames it).
            with self._lock:
                self._load()
            snapshot = self._snapshot
        if snapshot is None or snapshot.database != database:
            return Snapshot(None, database)
        return snapshot

    def _fresh(self) -> Snapshot:
        snapshot = self._snapshot_or_empty()
        if time.monotonic() - self._checked >= conf.TENANT_REFRESH:
            # Another thread already checking: serve from the copy meanwhile.
            if self._lock.acquire(blocking=False):
                try:
                    self._check()
                finally:
                    self._lock.release()
            snapshot = self._snapshot_or_empty()
        return snapshot

    def _missed(self) -> bool:
        """After a miss: read the revision unless the rate allows no query now; say whether
        the copy changed."""
        if self._busy():
            return False
        # Misses that wait here while another thread reads the revision then use its answer.
        with self._lock:
            if time.monotonic() - self._checked < 1.0 / conf.TENANT_MISS_RATE:
                return False
            return self._check()

    def _check(self) -> bool:
        """Read the revision, reload if it moved; say whether it did (call with the lock)."""
        snapshot = self._snapshot
        self.stats.checks += 1
        rows = self._query(REVISION_SQL)
        self._checked = time.monotonic()
        revision = None if rows is None else rows[0][0]
        if (
            snapshot is not None
            and snapshot.revision == revision
            and snapshot.database == _database()
        ):
            return False
        self._load()
        return True

    def _load(self) -> None:
        self.stats.loads += 1
        rows = self._query(LOAD_SQL)
        self._checked = time.monotonic()
        self._snapshot = _snapshot_of(rows)

    def _query(self, sql: str) -> list[Any] | None:
        """Rows of ``sql`` on the base database; ``None`` when the tables do not exist."""
        connection = connections[DEFAULT_BASE]
        self._local.busy = True
        try:
            # Inside a transaction, a savepoint: a missing table must not abort the caller's.
            with (
                (
                    transaction.atomic(using=DEFAULT_BASE)
                    if connection.in_atomic_block
                    else contextlib.nullcontext()
                ),
                connection.cursor() as cursor,
            ):
                cursor.execute(sql)
                rows: list[Any] = cursor.fetchall()
                return rows
        except ProgrammingError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "42P01":  # undefined_table
                return None
            raise
        finally:
            self._local.busy = False


def _database() -> str:
    return str(conf.databases[DEFAULT_BASE].get("NAME"))


def _snapshot_of(rows: list[Any] | None) -> Snapshot:
    if rows is None:
        return Snapshot(None, _database())
    databases = conf.databases
    settings_hosts = databases.domains
    hosts: dict[str, list[str]] = {}
    configs: dict[str, Any] = {}
    bases: dict[str, str] = {}
    for _revision, name, config, domain, base in rows:
        # Entries that clash with the settings, or were written past the API's validation,
        # are left out: the settings win, and checks E015 and E016 name them.
        if name is None or name in dict.keys(databases.schemas) or name in dict.keys(databases):
            continue
        if schema_name_problem(name) or base_problem(base, databases):
            continue
        bases[name] = base
        # Django reads jsonb as text (JSONField decodes it), and so does this raw query.
        configs[name] = json.loads(config) if isinstance(config, str) else config
        if domain is not None and domain not in settings_hosts and _servable(domain):
            hosts.setdefault(name, []).append(domain)
    by_name = {
        name: Schema(
            name=name,
            alias=name,
            domains=tuple(hosts.get(name, ())),
            config=MappingProxyType(dict(config) if isinstance(config, Mapping) else {}),
            base=bases[name],
        )
        for name, config in configs.items()
    }
    by_host = {host: by_name[name] for name, names in hosts.items() for host in names}
    return Snapshot(rows[0][0], _database(), by_name, by_host)


def _servable(domain: str) -> bool:
    """Whether a request can have ``domain`` as its host (as the API stores it)."""
    return not domain_problem(domain) and normalize_host(domain) == domain


def all_schemas() -> dict[str, Schema]:
    """Every schema by name: those of ``SCHEMATA_DOMAINS`` in their order, then the tenants
    registered at run time by name, as the database has them now."""
    settings_schemas = dict(conf.databases.schemas)
    return {**settings_schemas, **registry.schemas()}


registry = Registry()


def forget_on_setting_change(setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: tenants that clashed with the settings may not now."""
    if setting in {"DATABASES", "SCHEMATA_DOMAINS"}:
        registry.clear()


def _reset_lock() -> None:
    # A child forked while another thread held the lock would wait on it for ever.
    registry._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


def problems() -> list[tuple[str, str]]:
    """``(check id, message)`` for each run-time tenant or domain that clashes with the
    settings (E015) or that no request could reach (E016); such entries are not served."""
    rows = registry._query(LOAD_SQL)
    databases = conf.databases
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _revision, name, _config, domain, base in rows or ():
        if name is None:
            continue
        if name not in seen:
            seen.add(name)
            if name in dict.keys(databases.schemas) or name in dict.keys(databases):
                where = "SCHEMATA_DOMAINS" if name in dict.keys(databases.schemas) else "DATABASES"
                found.append(("E015", f"The run-time tenant {name!r} has a name {where} uses."))
            elif name_problem := schema_name_problem(name):
                found.append(("E016", f"The run-time tenant {name!r}: {name_problem}"))
            elif base_problem_ := base_problem(base, databases):
                found.append(("E016", f"The run-time tenant {name!r}'s database: {base_problem_}"))
        if domain is None:
            continue
        if domain in databases.domains:
            found.append(
                (
                    "E015",
                    f"The domain {domain!r} of the run-time tenant {name!r} is listed in "
                    f"SCHEMATA_DOMAINS.",
                )
            )
        elif not _servable(domain):
            problem = domain_problem(domain) or "not lower-case, or with a port or final dot."
            found.append(
                ("E016", f"The domain {domain!r} of the run-time tenant {name!r}: {problem}")
            )
    return found
