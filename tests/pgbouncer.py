"""Throwaway PgBouncer servers in front of the test database, started once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.services import stop

#: Only names the socket file: the servers listen on no TCP port (listen_addr is empty).
PORT = 6432


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer: where its socket is, and how to reach it from DATABASES."""

    pid: int
    socket_dir: Path
    log: Path
    user: str

    def database(self, base: dict[str, Any]) -> dict[str, Any]:
        """``base`` (a DATABASES entry) pointed at this PgBouncer."""
        return {**base, "HOST": str(self.socket_dir), "PORT": str(PORT)}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def servers(self) -> int:
        """How many server connections PgBouncer holds now, in every pool."""
        # The admin console speaks the simple query protocol only: bind on the client side.
        with psycopg.connect(
            host=str(self.socket_dir),
            port=PORT,
            dbname="pgbouncer",
            user=self.user,
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
        ) as conn:
            return len(conn.execute("SHOW SERVERS").fetchall())


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup: None) -> Iterator[Callable[..., PgBouncer]]:
    """Start a PgBouncer per distinct configuration: ``start(databases, user, **settings)``
    takes the ``[databases]`` section's text, the login user (trusted) and more
    ``[pgbouncer]`` settings; each listens on a unix socket in a temp dir of its own and is
    stopped by pid at the end of the session, before the test database is dropped."""
    binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if binary is None:
        pytest.fail("pgbouncer is not installed: run ./tests/run, or apt-get install pgbouncer")
    started: dict[str, tuple[PgBouncer, subprocess.Popen[bytes]]] = {}

    def start(databases: str, user: str, **settings: str | int) -> PgBouncer:
        lines = {
            "listen_addr": "",
            "listen_port": PORT,
            "auth_type": "trust",
            "admin_users": user,
            "pool_mode": "session",
            "query_wait_timeout": 10,  # not PgBouncer's 120 s, should a test go wrong
            **settings,
        }
        key = databases + repr(sorted(lines.items())) + user
        if key in started:
            return started[key][0]
        # A short path: a unix socket path must fit in about 107 bytes.
        tmp = Path(tempfile.mkdtemp(prefix="schemata-pgb."))
        lines.update(unix_socket_dir=str(tmp), auth_file=str(tmp / "users.txt"))
        (tmp / "users.txt").write_text(f'"{user}" ""\n')
        ini = "\n".join([databases, "[pgbouncer]", *(f"{k} = {v}" for k, v in lines.items())])
        (tmp / "pgbouncer.ini").write_text(ini + "\n")
        command = [binary, str(tmp / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            shutil.chown(tmp, "nobody")
            command[1:1] = ["-u", "nobody"]
        log = tmp / "pgbouncer.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        server = PgBouncer(process.pid, tmp, log, user)
        started[key] = (server, process)
        deadline = time.monotonic() + 10
        while True:  # its socket file appears a moment before it accepts connections
            try:
                server.servers()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start:\n{server.log_text()}")
                time.sleep(0.01)
        return server

    try:
        yield start
    finally:
        for server, process in started.values():
            stop(process)
            shutil.rmtree(server.socket_dir, ignore_errors=True)
