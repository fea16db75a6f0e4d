"""Throwaway servers the tests need besides PostgreSQL, started once per session."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
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


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """End a server the tests started: SIGTERM (a graceful stop), then SIGKILL after
    ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def python_output(code: str, cwd: Path) -> str:
    """What a fresh interpreter prints running ``code`` in ``cwd`` (away from the repository
    root: tests/conftest.py makes it import the installed package)."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env=dict(os.environ),
    )
    return result.stdout


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (gunicorn's, in the tests and benchmarks)."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock
