"""A throwaway PostgreSQL server in a temporary directory, on a unix socket only.

In Python::

    from tests.pgserver import running

    with running(max_connections=100) as server:
        server.create_database("shop")
        server.url("shop")       # a DATABASE_URL in django-environ's form
        server.restart()         # pg_ctl restart -m fast, waits until it accepts connections

As a command (the server is stopped and its directory removed when COMMAND exits)::

    python tests/pgserver.py [--max-connections N] [-c NAME=VALUE]... [COMMAND [ARGS...]]

runs COMMAND with ``DATABASE_URL`` set to a new database ``schemata``; without COMMAND it
prints that URL and serves until interrupted. As root, ``initdb`` and the server run as
``nobody`` (both refuse to run as root), like ``tests/postgres.sh``, which also finds (and
if need be installs) the server binaries.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
USER = "postgres"
#: Speed over durability: every server this module starts is thrown away.
DEFAULT_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def find_bindir() -> Path:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres`` that ``postgres.sh`` finds."""
    result = subprocess.run(
        ["bash", str(HERE / "postgres.sh"), "--bindir"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"PostgreSQL server binaries not found:\n{result.stderr}")
    return Path(result.stdout.strip())


class PostgresServer:
    """One server's data directory, socket and log, all under ``directory``."""

    def __init__(self, directory: Path, bindir: Path, settings: Mapping[str, str]) -> None:
        self.directory = directory
        self.bindir = bindir
        self.settings = dict(settings)
        self.data = directory / "data"
        self.log = directory / "postgres.log"

    @property
    def host(self) -> str:
        """The socket directory: libpq's ``host`` for a unix socket."""
        return str(self.directory)

    def _server_command(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]
        return command

    def _run(self, *args: str) -> None:
        # Output to a file, not a pipe: a postmaster started by pg_ctl could inherit a pipe
        # and keep it open, and reading it to the end would then never finish.
        with tempfile.TemporaryFile() as output:
            result = subprocess.run(
                self._server_command(*args), cwd="/", stdout=output, stderr=subprocess.STDOUT
            )
            if result.returncode != 0:
                output.seek(0)
                log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
                raise RuntimeError(
                    f"{' '.join(args[:1] + args[-1:])} failed ({result.returncode}):\n"
                    f"{output.read().decode(errors='replace')}\n{log}"
                )

    def init(self) -> None:
        """Create the data directory (``initdb``), with trust authentication."""
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            USER,
            "-N",
            "--no-locale",
            "-E",
            "UTF8",
        )
        # In postgresql.auto.conf, so that a restart by any means keeps them.
        settings = {"listen_addresses": "", "unix_socket_directories": self.host}
        settings.update(self.settings)
        auto_conf = self.data / "postgresql.auto.conf"
        auto_conf.write_text("".join(f"{name} = '{value}'\n" for name, value in settings.items()))
        if os.geteuid() == 0:
            shutil.chown(auto_conf, "nobody")

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *options, action
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``) and wait until it is gone."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (``pg_ctl restart -m mode``); wait until it accepts connections."""
        self._pg_ctl("restart", "-m", mode)

    def url(self, database: str = "postgres") -> str:
        """A ``DATABASE_URL`` for ``database``: the socket directory percent-encoded as host."""
        return f"postgres://{USER}@/{urllib.parse.quote(self.host, safe='')}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection to ``database``, in autocommit mode."""
        import psycopg

        return psycopg.connect(
            host=self.host, user=USER, dbname=database, autocommit=True, **kwargs
        )

    def create_database(self, name: str) -> None:
        """Create the database ``name``."""
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')


@contextlib.contextmanager
def running(
    max_connections: int = 100, settings: Mapping[str, str] | None = None
) -> Iterator[PostgresServer]:
    """Start a new server; yield it; stop it and remove its directory, whatever happens."""
    bindir = find_bindir()
    # A short path: a unix socket's path must fit in about 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="schemata-pg.", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(directory, "nobody")
    server = PostgresServer(
        directory,
        bindir,
        {**DEFAULT_SETTINGS, "max_connections": str(max_connections), **(settings or {})},
    )
    started = False
    try:
        server.init()
        started = True
        server.start()
        yield server
    finally:
        if started:
            try:
                server.stop("fast")
            except RuntimeError:
                with contextlib.suppress(RuntimeError):
                    server.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-connections", type=int, default=100, help="default: 100")
    parser.add_argument(
        "-c",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting, e.g. -c log_min_duration_statement=0 (repeatable)",
    )
    parser.add_argument("--database", default="schemata", help="created, in DATABASE_URL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run with DATABASE_URL set")
    args = parser.parse_args(argv)
    settings = dict(setting.split("=", 1) for setting in args.settings)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # SIGTERM and SIGHUP unwind through the finally blocks below, which stop the server.
    signal.signal(signal.SIGTERM, _exit_on)
    signal.signal(signal.SIGHUP, _exit_on)
    with running(args.max_connections, settings) as server:
        server.create_database(args.database)
        url = server.url(args.database)
        if not command:
            print(f"DATABASE_URL={url}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
            return 0
        child = subprocess.Popen(command, env={**os.environ, "DATABASE_URL": url})
        try:
            return child.wait()
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


if __name__ == "__main__":
    sys.exit(main())
