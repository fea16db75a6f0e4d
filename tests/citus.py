"""A throwaway Citus cluster: a coordinator and two workers, each a plain PostgreSQL server
started by ``tests/pgserver.py`` with ``shared_preload_libraries = 'citus'``.

In Python::

    from tests.citus import citus_cluster  # the session fixture, imported by name

    def test_it(citus_cluster):
        url = citus_cluster.create_database("shop")  # on every node, with citus, nodes added
        citus_cluster.coordinator.connect("shop")

Nodes reach each other over TCP on 127.0.0.1 (ports below 32768, picked free), as Citus names
nodes by host and port; clients of the tests use the unix sockets. Citus must be installed in
the PostgreSQL 15 that ``find_bindir()`` finds: ``../shared/citus/build.sh`` does that.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer, find_bindir, free_port, running

PG_MAJOR = 15
BUILD_HINT = "run ../shared/citus/build.sh (from the project root) to build and install it"
NODE_SETTINGS = {
    "shared_preload_libraries": "citus",
    # citus_schema_move copies a schema by logical replication.
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_worker_processes": "32",
    "listen_addresses": "127.0.0.1",
    # The nodes' own connections to each other: no SSL between throwaway servers.
    "citus.node_conninfo": "sslmode=disable",
    # One node's connections to another stay few: the machine is small.
    "citus.max_shared_pool_size": "40",
    "citus.enable_schema_based_sharding": "on",
    # Off, writes acknowledged during a citus_schema_move can be missing afterwards (see
    # schemata.citus.move_to_node).
    "synchronous_commit": "on",
}


class CitusUnavailable(RuntimeError):
    """Citus cannot run here; the message says what to do."""


def check_installation(bindir: Path) -> None:
    """Raise ``CitusUnavailable`` unless ``bindir`` is PostgreSQL 15 with citus.so installed."""
    version = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"\s(\d+)\.", version)
    if not match or int(match.group(1)) != PG_MAJOR:
        raise CitusUnavailable(
            f"The Citus tests need PostgreSQL {PG_MAJOR} (Citus is built for it), but the "
            f"server binaries in {bindir} are {version.strip()!r}."
        )
    libdir = _pkglibdir(bindir)
    if not (libdir / "citus.so").exists():
        raise CitusUnavailable(
            f"Citus is not installed ({libdir}/citus.so is missing): {BUILD_HINT}."
        )


def _pkglibdir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        result = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True
        )
        return Path(result.stdout.strip())
    return bindir.parent / "lib"  # Debian's layout: /usr/lib/postgresql/15/{bin,lib}


@dataclass
class Node:
    server: PostgresServer
    port: int

    def connect(self, database: str = "postgres", **kwargs: object) -> object:
        """A psycopg autocommit connection to ``database`` on this node, by its unix socket."""
        import psycopg

        return psycopg.connect(
            host=self.server.host,
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
            **kwargs,  # type: ignore[arg-type]
        )


@dataclass
class Cluster:
    coordinator: Node
    workers: list[Node]

    @property
    def nodes(self) -> list[Node]:
        return [self.coordinator, *self.workers]

    def url(self, database: str) -> str:
        """A ``DATABASE_URL`` for ``database`` on the coordinator (its unix socket)."""
        return f"{self.coordinator.server.url(database)}?port={self.coordinator.port}"

    def create_database(self, name: str) -> str:
        """Create ``name`` on every node with the citus extension, register the workers in
        the coordinator's copy; return its ``DATABASE_URL``."""
        for node in self.nodes:
            with node.connect() as connection:  # type: ignore[attr-defined]
                connection.execute(f'CREATE DATABASE "{name}"')
            with node.connect(name) as connection:  # type: ignore[attr-defined]
                connection.execute("CREATE EXTENSION citus")
        with self.coordinator.connect(name) as connection:  # type: ignore[attr-defined]
            connection.execute(
                "SELECT citus_set_coordinator_host('127.0.0.1', %s)", [self.coordinator.port]
            )
            for worker in self.workers:
                connection.execute("SELECT citus_add_node('127.0.0.1', %s)", [worker.port])
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` from every node, ending the sessions still on it."""
        for node in reversed(self.nodes):
            with node.connect() as connection:  # type: ignore[attr-defined]
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_cluster(workers: int = 2) -> Iterator[Cluster]:
    """Start a coordinator and ``workers`` workers; yield the cluster; stop every node."""
    bindir = find_bindir()
    check_installation(bindir)
    with contextlib.ExitStack() as stack:
        nodes = []
        for _ in range(1 + workers):
            port = free_port()
            server = stack.enter_context(
                running(max_connections=200, settings={**NODE_SETTINGS, "port": str(port)})
            )
            nodes.append(Node(server, port))
        yield Cluster(nodes[0], nodes[1:])


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[Cluster]:
    """A Citus cluster (a coordinator and two workers) for the session; stopped at its end."""
    try:
        with running_cluster() as cluster:
            yield cluster
    except CitusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
