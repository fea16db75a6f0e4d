"""Throwaway servers the tests need besides PostgreSQL, started once per session."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Start a private redis-server on a unix socket; yield its URL; stop it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run ./tests/run, or apt-get install redis-server"
        )
    # A short path: a unix socket path must fit in about 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="schemata-redis."))
    socket = tmp / "redis.sock"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            "0",  # no TCP at all
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(tmp),
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start (exit status {process.poll()})")
            time.sleep(0.02)
        yield f"unix://{socket}"
    finally:
        stop(process)
        shutil.rmtree(tmp, ignore_errors=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server the tests started: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
