"""Run-time tenants in a real multi-process server: gunicorn with two worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

import schemata
from tests import test_tenants
from tests.services import UnixHTTPConnection, stop
from tests.test_tenants import database_url

runtime = test_tenants.runtime  # the fixture, for this module's tests
#: SCHEMATA_TENANT_REFRESH in the server: how long a removed tenant may still be served.
REFRESH = 0.5
#: SCHEMATA_TENANT_MISS_RATE in the server (the default).
MISS_RATE = 10
WORKERS = 2


@dataclass
class Server:
    """A gunicorn server on a unix socket; ``get`` returns (status, JSON body or None)."""

    socket_path: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, host: str, path: str = "/") -> tuple[int, dict[str, Any] | None]:
        conn = UnixHTTPConnection(self.socket_path, timeout=15)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None

    def many(
        self, host: str, count: int, path: str = "/", threads: int = 8, hosts: bool = False
    ) -> list[Any]:
        """``count`` requests from ``threads`` threads; with ``hosts``, each to a host of
        its own, ``flood-<n>.example.com``."""
        with ThreadPoolExecutor(threads) as pool:
            return list(
                pool.map(
                    lambda n: self.get(f"flood-{n}.example.com" if hosts else host, path),
                    range(count),
                )
            )

    def served_by(self, host: str, count: int = 40) -> dict[int, str]:
        """Worker pid -> schema, from ``count`` concurrent requests slow enough to spread."""
        answers = self.many(host, count, "/?sleep=0.02")
        assert all(status == 200 for status, _ in answers), answers
        return {body["pid"]: body["schema"] for _, body in answers}

    def registry_stats(self) -> dict[int, dict[str, int]]:
        """Worker pid -> its registry's counters."""
        answers = self.many("alpha.example.com", 40, "/registry/?sleep=0.02")
        return {body["pid"]: body for _, body in answers}


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[Server]:
    """gunicorn, two sync workers, serving the test database with run-time tenants on."""
    with tempfile.TemporaryDirectory(prefix="schemata-gunicorn.") as tmp:
        socket_path = f"{tmp}/g.sock"
        log = Path(tmp) / "gunicorn.log"
        with django_db_blocker.unblock():
            url = database_url()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.tenant_settings",
            "DATABASE_URL": url,
            "SCHEMATA_TEST_TENANT_REFRESH": str(REFRESH),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("gunicorn")),
                    f"--workers={WORKERS}",
                    f"--bind=unix:{socket_path}",
                    "--graceful-timeout=5",
                    "django.core.wsgi:get_wsgi_application()",
                ],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Server(socket_path, process, log)
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    pytest.fail(f"gunicorn exited:\n{log.read_text()}")
                try:
                    if server.get("alpha.example.com")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not answer within 30 s:\n{log.read_text()}")
                time.sleep(0.1)
            yield server
        finally:
            stop(process, timeout=15)  # SIGTERM: gunicorn's workers finish and exit


def test_a_tenant_created_while_serving_is_served_by_every_worker(
    server: Server, runtime: None
) -> None:
    # Both workers have looked for the host already, and know it as unknown.
    assert {status for status, _ in server.many("rt-live.example.com", 40)} == {404}

    schemata.create_tenant("rt-live.example.com", "rt_live", template="alpha")
    time.sleep(1 / MISS_RATE)
    served = server.served_by("rt-live.example.com")

    assert len(served) == WORKERS
    assert set(served.values()) == {"rt_live"}


def test_a_deleted_tenant_stops_in_every_worker_within_the_refresh_period(
    server: Server, runtime: None
) -> None:
    schemata.create_tenant("rt-gone.example.com", "rt_gone", template="alpha")
    time.sleep(1 / MISS_RATE)
    workers = set(server.served_by("rt-gone.example.com"))

    schemata.delete_tenant("rt_gone")
    time.sleep(REFRESH + 0.1)
    answers = server.many("rt-gone.example.com", 60)

    assert len(workers) == WORKERS
    assert {status for status, _ in answers} == {404}
    assert {body["pid"] for _, body in answers if body} == workers


def test_a_flood_of_unknown_hosts_costs_a_bounded_number_of_queries(
    server: Server, runtime: None
) -> None:
    before = server.registry_stats()
    reads_before = revision_reads()
    started = time.monotonic()

    answers = server.many("", 10_000, threads=16, hosts=True)
    elapsed = time.monotonic() - started
    after = server.registry_stats()
    reads = revision_reads() - reads_before

    assert {status for status, _ in answers} == {404}
    assert len({body["pid"] for _, body in answers if body}) == WORKERS
    # Each worker: at most MISS_RATE revision reads a second; at most one load (the previous
    # test's flush emptied the revision table), whatever the number of hosts.
    bound = 2 + MISS_RATE * elapsed
    assert set(after) == set(before)
    for pid, stats in after.items():
        assert stats["checks"] - before[pid]["checks"] <= bound, (pid, stats, elapsed)
        assert stats["loads"] - before[pid]["loads"] <= 1
    # What the database saw: the revision table read once per check and per load, no more.
    assert reads <= WORKERS * (bound + 1), (reads, elapsed)


def revision_reads() -> int:
    """Scans of the revision table, as the server's statistics count them: not the whole
    database's transactions, which autovacuum adds to after the earlier tests' writes."""
    time.sleep(0.6)  # backends report their counts at exit (the workers' after each request)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables "
            "WHERE relid = 'public.schemata_revision'::regclass"
        )
        return int(cursor.fetchone()[0])
