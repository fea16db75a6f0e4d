"""The PostgreSQL launcher of the tests, the demo and the benchmarks (tests/pgserver.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import find_bindir, kept

LAUNCHER = str(Path(__file__).resolve().parent / "pgserver.py")
# Prints the database, the socket directory and the server's fsync setting, then exits 3.
PROBE = (
    "import os, urllib.parse, subprocess\n"
    "url = os.environ['DATABASE_URL']\n"
    "host = urllib.parse.unquote(url.split('/')[3])\n"
    "query = \"SELECT current_database(), current_setting('fsync')\"\n"
    "out = subprocess.run([{psql!r}, '-X', '-h', host, '-U', 'postgres', '-d', 'schemata',\n"
    "    '-Atc', query], capture_output=True, text=True, check=True).stdout\n"
    "print(host, out.strip())\n"
    "raise SystemExit(3)\n"
)


def launch(*args: str, user: str | None = None, **kwargs: object) -> subprocess.Popen[str]:
    python = [sys.executable]
    if user:  # the interpreter of the suite may live where that user cannot go
        python = ["runuser", "-u", user, "--", "/usr/bin/python3"]
    return subprocess.Popen(  # type: ignore[no-any-return]  # **kwargs hides the text mode
        [*python, LAUNCHER, *args],
        cwd="/",
        env={key: value for key, value in os.environ.items() if key != "DATABASE_URL"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def probe_command() -> list[str]:
    return ["python3", "-c", PROBE.format(psql=str(find_bindir() / "psql"))]


def test_a_command_runs_against_a_new_database_and_its_status_is_returned() -> None:
    process = launch("--", *probe_command())
    out, err = process.communicate(timeout=120)

    host, result = out.split()
    assert process.returncode == 3, err
    assert result == "schemata|off"
    assert not Path(host).exists()  # the server is stopped and its directory removed
    assert err.splitlines()[-1] == "pgserver: stopped"


def test_it_works_for_a_user_other_than_root() -> None:
    process = launch("--", *probe_command(), user="nobody" if os.geteuid() == 0 else None)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 3, err
    assert out.split()[1] == "schemata|off"


def test_sigterm_reaches_the_command_then_the_server_stops(tmp_path: Path) -> None:
    marker = tmp_path / "got"
    script = f"trap 'echo TERM > {marker}; exit 7' TERM; echo \"$DATABASE_URL\"; sleep 60 & wait"
    process = launch("--", "bash", "-c", script)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    host = Path(url.split("/")[3].replace("%2F", "/"))

    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)

    assert process.returncode == 128 + signal.SIGTERM
    assert marker.read_text() == "TERM\n"
    assert not host.exists()


def test_a_kept_data_directory_is_reused_and_a_running_server_left_running(
    open_tmp: Path,
) -> None:
    data = open_tmp / "data"
    first = launch("--data", str(data), "--database", "demo", "--", "true")
    first.communicate(timeout=120)
    with kept(data) as server:
        second = launch("--data", str(data), "--database", "demo", "--", "true")
        _, err = second.communicate(timeout=120)
        still_running = server.is_running()

    assert first.returncode == 0
    assert (data / "PG_VERSION").exists()
    assert second.returncode == 0, err
    assert f"pgserver: using the PostgreSQL server already running on {data} (left running)" in (
        err.splitlines()
    )
    assert still_running
    assert not server.is_running()


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory that the server's user (nobody, as root) can enter."""
    path = Path(tempfile.mkdtemp(prefix="schemata-kept.", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_binaries_are_looked_up_in_version_15_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "15", "16"):
        fake_binaries(tmp_path / version / "bin")
    monkeypatch.setenv("SCHEMATA_PG_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", "/nowhere")

    assert find_bindir() == tmp_path / "15" / "bin"


def test_without_15_the_highest_version_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("9.6", "16", "13"):
        fake_binaries(tmp_path / version / "bin")
    monkeypatch.setenv("SCHEMATA_PG_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", "/nowhere")

    assert find_bindir() == tmp_path / "16" / "bin"


def test_missing_binaries_are_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "SCHEMATA_PG_ROOT": str(tmp_path), "PATH": "/nowhere"}

    result = subprocess.run(
        [sys.executable, LAUNCHER, "--bindir"], env=env, capture_output=True, text=True
    )

    assert result.returncode == 1
    assert result.stderr == (
        "pgserver: PostgreSQL server binaries (initdb, pg_ctl, postgres, createdb, psql) not "
        f"found in {tmp_path}/15/bin, on PATH or in {tmp_path}/*/bin. Install them (e.g. "
        "'sudo apt-get install postgresql' on Debian/Ubuntu), set SCHEMATA_PG_ROOT, or set "
        "DATABASE_URL to an existing server.\n"
    )


def fake_binaries(bindir: Path) -> None:
    """Executables with the names of the server's, enough for the lookup."""
    bindir.mkdir(parents=True)
    for tool in ("initdb", "pg_ctl", "postgres", "createdb", "psql"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
