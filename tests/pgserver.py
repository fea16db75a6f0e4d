"""Start PostgreSQL servers for the tests, the demo and the benchmarks, on unix sockets only.

In Python::

    from tests.pgserver import running

    with running(max_connections=100) as server:
        server.create_database("shop")
        server.url("shop")       # a DATABASE_URL in django-environ's form
        server.restart()         # pg_ctl restart -m fast, waits until it accepts connections

As a command (standard library only, so any Python 3.9+ runs it)::

    python3 tests/pgserver.py [--install] [--max-connections N] [-c NAME=VALUE]...
                              [--data DIR] [--database NAME] [--] [COMMAND [ARGS...]]
    python3 tests/pgserver.py --bindir [--install]

runs COMMAND with ``DATABASE_URL`` set to a new database, then stops the server and removes
its temporary directory, whatever happens (success, failure, Ctrl-C, SIGTERM, SIGHUP); it
exits with COMMAND's status, or 128 + the signal's number. Without COMMAND it prints the URL
and serves until interrupted. With ``--data DIR`` the cluster lives in DIR and is kept (made
on first use; a server already running on it is used and left running). ``--bindir`` prints
the directory of the server binaries.

Binaries: ``$SCHEMATA_PG_ROOT/15/bin`` first (default root ``/usr/lib/postgresql``; the Citus
extension of the tests is built for 15), then ``initdb`` on PATH, then the highest version
under the root. With ``--install``, as root, ``apt-get`` installs them when none is found. As
root, ``initdb`` and the server run as ``nobody`` (both refuse to run as root), or as the
owner of ``--data DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

USER = "postgres"
PREFERRED_VERSION = "15"
TOOLS = ("initdb", "pg_ctl", "postgres", "createdb", "psql")
#: Speed over durability: every server in a temporary directory is thrown away.
DEFAULT_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
#: How long COMMAND has to exit after a signal was passed on to it, before it is killed.
GRACE_S = 10.0


def say(message: str) -> None:
    print(f"pgserver: {message}", file=sys.stderr, flush=True)


def _pg_root() -> Path:
    return Path(os.environ.get("SCHEMATA_PG_ROOT") or "/usr/lib/postgresql")


def _version_key(bindir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (-1,)


def _candidates() -> Iterator[Path]:
    root = _pg_root()
    yield root / PREFERRED_VERSION / "bin"
    initdb = shutil.which("initdb")
    if initdb:
        # Through symlinks (e.g. /usr/local/bin/initdb) to where pg_ctl and the rest live.
        yield Path(initdb).resolve().parent
    yield from sorted(root.glob("*/bin"), key=_version_key, reverse=True)


def _install() -> None:
    say("PostgreSQL server binaries not found, installing them with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-y", "-qq"]
    try:
        subprocess.run([*apt, "update"], env=env, stdout=sys.stderr, check=True)
        for package in (f"postgresql-{PREFERRED_VERSION}", "postgresql"):
            installed = subprocess.run([*apt, "install", package], env=env, stdout=sys.stderr)
            if installed.returncode == 0:
                return
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"could not install PostgreSQL with apt-get: {exc}") from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 below 32768 (under the kernel's ephemeral range, where outgoing
    connections take theirs) that nothing listens on now."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port between 20000 and 32000")


def find_bindir(install: bool = False) -> Path:
    """The directory of ``initdb``, ``pg_ctl``, ``postgres``, ``createdb`` and ``psql``.

    With ``install``, as root, installs them with ``apt-get`` when none is found.
    """
    for bindir in _candidates():
        if all(os.access(bindir / tool, os.X_OK) for tool in TOOLS):
            return bindir
    if install and os.geteuid() == 0:
        _install()
        return find_bindir()
    raise RuntimeError(
        f"PostgreSQL server binaries ({', '.join(TOOLS)}) not found in "
        f"{_pg_root() / PREFERRED_VERSION / 'bin'}, on PATH or in {_pg_root()}/*/bin. Install "
        "them (e.g. 'sudo apt-get install postgresql' on Debian/Ubuntu), set SCHEMATA_PG_ROOT, "
        "or set DATABASE_URL to an existing server."
    )


class PostgresServer:
    """One server: its socket directory and log in ``directory``, its data in ``data``
    (default ``directory/data``); as root it runs as ``user`` (default ``nobody``)."""

    def __init__(
        self,
        directory: Path,
        bindir: Path,
        settings: Mapping[str, str],
        *,
        data: Path | None = None,
        user: str | None = None,
    ) -> None:
        self.directory = directory
        self.bindir = bindir
        self.settings = {"listen_addresses": "", "unix_socket_directories": str(directory)}
        self.settings.update(settings)
        self.data = data or directory / "data"
        self.log = directory / "postgres.log"
        self.user = (user or "nobody") if os.geteuid() == 0 else None

    @property
    def host(self) -> str:
        """The socket directory: libpq's ``host`` for a unix socket."""
        return str(self.directory)

    def _server_command(self, *args: str) -> list[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return command

    def _run(self, *args: str, as_server: bool = True) -> str:
        # Output to a file, not a pipe: a postmaster started by pg_ctl could inherit a pipe
        # and keep it open, and reading it to the end would then never finish.
        command = self._server_command(*args) if as_server else [str(self.bindir / args[0])]
        command += [] if as_server else list(args[1:])
        with tempfile.TemporaryFile() as output:
            result = subprocess.run(command, cwd="/", stdout=output, stderr=subprocess.STDOUT)
            output.seek(0)
            text = output.read().decode(errors="replace")
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:1] + args[-1:])} failed ({result.returncode}):\n{text}\n{log}"
            )
        return text

    def init(self) -> None:
        """Create the data directory (``initdb``), with trust authentication."""
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", USER, "-N", "--no-locale",
            "-E", "UTF8",
        )  # fmt: skip
        # In postgresql.auto.conf too, so that a restart by any means keeps them.
        auto_conf = self.data / "postgresql.auto.conf"
        lines = "".join(f"{name} = '{value}'\n" for name, value in self.settings.items())
        auto_conf.write_text(lines)
        if self.user:
            shutil.chown(auto_conf, self.user)

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *options, action
        )

    def is_running(self) -> bool:
        """Whether a server runs on the data directory (``pg_ctl status``)."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status")
        except RuntimeError:
            return False
        return True

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # On the command line as well: a data directory made elsewhere lacks them.
        options = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items())
        self._pg_ctl("start", "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``) and wait until it is gone."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (``pg_ctl restart -m mode``); wait until it accepts connections."""
        self._pg_ctl("restart", "-m", mode)

    def version(self) -> str:
        """The server's version, e.g. ``15.18``."""
        return self._run("postgres", "--version", as_server=False).split()[2]

    def url(self, database: str = "postgres") -> str:
        """A ``DATABASE_URL`` for ``database``: the socket directory percent-encoded as host."""
        return f"postgres://{USER}@/{urllib.parse.quote(self.host, safe='')}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any) -> Any:
        """A psycopg connection to ``database``, in autocommit mode."""
        import psycopg

        return psycopg.connect(
            host=self.host, user=USER, dbname=database, autocommit=True, **kwargs
        )

    def _psql(self, query: str) -> str:
        return self._run(
            "psql", "-X", "-h", self.host, "-p", self.settings.get("port", "5432"), "-U", USER,
            "-d", "postgres", "-Atqc", query,
            as_server=False,
        )  # fmt: skip

    def create_database(self, name: str, exist_ok: bool = False) -> None:
        """Create the database ``name`` (with ``exist_ok``, unless it exists)."""
        literal = name.replace("'", "''")
        if exist_ok and self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{literal}'"):
            return
        identifier = name.replace('"', '""')
        self._psql(f'CREATE DATABASE "{identifier}"')


def _stop_quietly(server: PostgresServer) -> None:
    try:
        server.stop("fast")
    except RuntimeError:
        with contextlib.suppress(RuntimeError):
            server.stop("immediate")


@contextlib.contextmanager
def running(
    max_connections: int = 100, settings: Mapping[str, str] | None = None, install: bool = False
) -> Iterator[PostgresServer]:
    """Start a new server; yield it; stop it and remove its directory, whatever happens.

    With ``install``, as root, installs the server binaries first when they are missing.
    """
    bindir = find_bindir(install)
    # A short path: a unix socket's path must fit in about 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="schemata-pg.", dir="/tmp"))
    server = PostgresServer(
        directory,
        bindir,
        {**DEFAULT_SETTINGS, "max_connections": str(max_connections), **(settings or {})},
    )
    started = False
    try:
        if server.user:
            shutil.chown(directory, server.user)
        server.init()
        started = True
        server.start()
        yield server
    finally:
        if started:
            _stop_quietly(server)
        shutil.rmtree(directory, ignore_errors=True)


def _can_enter(user: str | None, directory: Path) -> bool:
    if user is None:
        return True
    result = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(directory)])
    return result.returncode == 0


def _owner(path: Path) -> str:
    owner = pwd.getpwuid(path.stat().st_uid).pw_name
    return "nobody" if owner == "root" else owner


def _short_hash(path: Path) -> str:
    return f"{zlib.crc32(str(path).encode()):08x}"


@contextlib.contextmanager
def kept(
    data: Path, settings: Mapping[str, str] | None = None, install: bool = False
) -> Iterator[PostgresServer]:
    """A server on the data directory ``data``, kept between runs (``initdb`` the first time).

    A server already running on it is used and left running; one started here is stopped
    afterwards. Its socket is in ``data`` when the path is short enough, else in /tmp.
    """
    bindir = find_bindir(install)
    data.mkdir(parents=True, exist_ok=True)
    data = data.resolve()
    user = _owner(data) if os.geteuid() == 0 else None
    if not _can_enter(user, data.parent):  # e.g. a clone under /root, closed to others
        with contextlib.suppress(OSError):
            data.rmdir()
        moved = Path(f"/var/tmp/schemata-data-{_short_hash(data)}")
        say(f"{user} cannot enter the directories above {data}: using {moved} instead")
        data = moved
        data.mkdir(parents=True, exist_ok=True)
        user = _owner(data)
    if user:
        shutil.chown(data, user)
    sockets = data
    if len(str(sockets)) > 90:  # a unix socket's path must fit in about 107 bytes
        sockets = Path(f"/tmp/schemata-data-{os.geteuid()}-{_short_hash(data)}")
        sockets.mkdir(mode=0o700, exist_ok=True)
        if user:
            shutil.chown(sockets, user)
    # Commits do not wait for the disk (a crash may lose the last ones), the rest is durable.
    server = PostgresServer(
        sockets, bindir, {"synchronous_commit": "off", **(settings or {})}, data=data, user=user
    )
    server.log = data / "postgres.log"
    if server.is_running():
        say(f"using the PostgreSQL server already running on {data} (left running)")
        yield server
        return
    if not (data / "PG_VERSION").exists():
        say(f"creating a database cluster in {data}")
        for leftover in data.iterdir():  # what an interrupted initdb left
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        server.init()
    server.start()
    say(f"started PostgreSQL {server.version()} on {data}")
    try:
        yield server
    finally:
        _stop_quietly(server)
        say("stopped PostgreSQL")


def run_command(command: list[str], env: Mapping[str, str]) -> int:
    """Run ``command`` in a process group of its own (in the terminal's foreground when we
    have it) and pass SIGINT, SIGTERM and SIGHUP sent to us on to that group.

    After a signal the group has ``GRACE_S`` seconds to exit before it is killed; the result is
    then 128 + the signal's number, else the command's exit status.
    """
    terminal = _foreground_terminal()
    received: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        # Popen returns once the command runs, so its group exists by then.
        child = subprocess.Popen(
            command, env=dict(env), preexec_fn=lambda: _take_terminal(terminal)
        )
        children.append(child)
        if received:  # arrived before the group existed
            forward(received[0], None)
        while child.poll() is None:
            try:
                child.wait(GRACE_S if received else 0.5)
            except subprocess.TimeoutExpired:
                if received:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
    finally:
        if terminal is not None:
            _give_terminal(terminal, os.getpgrp())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 128 + received[0]
    return 128 - child.returncode if child.returncode < 0 else child.returncode


def _foreground_terminal() -> int | None:
    """The file descriptor of our terminal when this process group has it in the foreground."""
    with contextlib.suppress(OSError, ValueError):
        fd = sys.stdin.fileno()
        if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    return None


def _give_terminal(fd: int, group: int) -> None:
    # A process outside the foreground group that sets it gets SIGTTOU unless it ignores it.
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.tcsetpgrp(fd, group)
    signal.signal(signal.SIGTTOU, previous)


def _take_terminal(fd: int | None) -> None:
    """In the command's process: a group of its own, in the terminal's foreground if any, so
    that Ctrl-C reaches it (and not us) and it can read the terminal."""
    os.setpgid(0, 0)
    if fd is not None:
        _give_terminal(fd, os.getpgrp())


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run COMMAND against a PostgreSQL server started for it."
    )
    parser.add_argument("--bindir", action="store_true", help="print the binaries' directory")
    parser.add_argument(
        "--install", action="store_true", help="as root, apt-get install PostgreSQL if missing"
    )
    parser.add_argument("--max-connections", type=int, default=200, help="default: 200")
    parser.add_argument(
        "-c",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting, e.g. -c log_min_duration_statement=0 (repeatable)",
    )
    parser.add_argument("--data", type=Path, help="a data directory kept between runs")
    parser.add_argument("--database", default="schemata", help="created, in DATABASE_URL")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run with DATABASE_URL set")
    args = parser.parse_args(argv)
    if any("=" not in setting for setting in args.settings):
        parser.error("-c takes NAME=VALUE")
    if args.bindir:
        try:
            print(find_bindir(args.install))
        except RuntimeError as exc:
            say(str(exc))
            return 1
        return 0
    settings = dict(setting.split("=", 1) for setting in args.settings)
    settings["max_connections"] = str(args.max_connections)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # Until COMMAND runs, a signal unwinds through the finally blocks that stop the server.
    for sig in SIGNALS:
        signal.signal(sig, _exit_on)
    try:
        if args.data:
            server_cm = kept(args.data, settings, install=args.install)
        else:
            server_cm = _announced(running(args.max_connections, settings, args.install))
        with server_cm as server:
            server.create_database(args.database, exist_ok=bool(args.data))
            url = server.url(args.database)
            if not command:
                print(f"DATABASE_URL={url}", flush=True)
                signal.pause()
                return 0
            return run_command(command, {**os.environ, "DATABASE_URL": url})
    except RuntimeError as exc:
        say(str(exc))
        return 1


@contextlib.contextmanager
def _announced(
    servers: contextlib.AbstractContextManager[PostgresServer],
) -> Iterator[PostgresServer]:
    with servers as server:
        say(f"started PostgreSQL {server.version()} at {server.host}")
        yield server
    say("stopped")


if __name__ == "__main__":
    sys.exit(main())
