"""A real deployment under load: 200 tenants served by gunicorn (gthread, 2 workers x 4
threads) with ``SCHEMATA_POOL["max_size"] = 8``, against a PostgreSQL server of this module's
own (``max_connections = 100``), which is restarted in the middle of the load."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import schemata
from tests.pgserver import PostgresServer, running
from tests.services import UnixHTTPConnection, stop

TENANTS = tuple(f"f{i:03}" for i in range(200))
DATABASE = "faults"
WORKERS, THREADS, MAX_SIZE = 2, 4, 8
CLIENTS = 8
#: After the first good response that follows a restart, requests must not fail any more.
MARGIN_S = 0.5

SETTINGS = f"""
import os

from schemata import expand_databases
from tests.settings import *  # noqa: F403
from tests.settings import env

SCHEMATA_DOMAINS = {{f"{{name}}.example.com": {{"schema_name": name}} for name in {TENANTS!r}}}
# Persistent: without the pool, every thread would keep a connection per schema it served.
# The worker's pid in application_name tells the workers' server connections apart.
DATABASES = expand_databases(
    {{"default": {{**env.db("DATABASE_URL"), "CONN_MAX_AGE": 60,
                  "OPTIONS": {{"application_name": f"faults-{{os.getpid()}}"}}}}}},
    SCHEMATA_DOMAINS,
)
SCHEMATA_POOL = {{"max_size": {MAX_SIZE}, "timeout": 10}}
# Tracebacks of failed requests into gunicorn's log.
LOGGING = {{
    "version": 1,
    "handlers": {{"stderr": {{"class": "logging.StreamHandler"}}}},
    "loggers": {{"django.request": {{"handlers": ["stderr"], "level": "ERROR"}}}},
}}
"""


@dataclass
class Outcome:
    tenant: str
    started: float
    ended: float
    status: int | None  # None: no response (a socket error)
    schema: str | None = None
    notes: list[str] | None = None
    error: str = ""

    @property
    def right(self) -> bool:
        """A good response, naming its own tenant and holding that tenant's marker only."""
        return self.status == 200 and self.schema == self.tenant and self.notes == [self.tenant]


class Site:
    """gunicorn serving the tests' project for the 200 tenants, on a unix socket."""

    def __init__(self, server: PostgresServer, tmp: Path) -> None:
        self.socket = str(tmp / "gunicorn.sock")
        self.log = tmp / "gunicorn.log"
        (tmp / "fault_settings.py").write_text(SETTINGS)
        package_root = str(Path(schemata.__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "fault_settings",
            "DATABASE_URL": server.url(DATABASE),
            # What this process imports, the package under test first.
            "PYTHONPATH": os.pathsep.join([str(tmp), package_root, *sys.path]),
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "django.core.wsgi:get_wsgi_application()",
            f"--bind=unix:{self.socket}",
            f"--workers={WORKERS}",
            "--worker-class=gthread",
            f"--threads={THREADS}",
            "--timeout=30",
            "--graceful-timeout=5",
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def get(self, tenant: str, connection: UnixHTTPConnection | None = None) -> Outcome:
        """GET / on ``tenant``'s host; a socket error is an outcome too."""
        own = connection or UnixHTTPConnection(self.socket, timeout=15)
        started = time.monotonic()
        try:
            own.request("GET", "/", headers={"Host": f"{tenant}.example.com"})
            response = own.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            own.close()
            return Outcome(tenant, started, time.monotonic(), None, error=repr(exc))
        finally:
            if connection is None:
                own.close()
        outcome = Outcome(tenant, started, time.monotonic(), response.status)
        if response.status == 200:
            data = json.loads(body)
            outcome.schema, outcome.notes = data["schema"], data["notes"]
        else:
            outcome.error = body[:200].decode(errors="replace")
        return outcome

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not (os.path.exists(self.socket) and self.get(TENANTS[0]).right):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"gunicorn did not serve (status {self.process.poll()}):\n{self.output()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        stop(self.process, timeout=15)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, with 200 tenant schemas of one marker row."""
    with running(max_connections=100) as pg:
        pg.create_database(DATABASE)
        with pg.connect(DATABASE) as connection, connection.transaction():
            for name in TENANTS:
                connection.execute(
                    f"CREATE SCHEMA {name}; CREATE TABLE {name}.testapp_note "
                    f"(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                    f"title varchar(100) NOT NULL); "
                    f"INSERT INTO {name}.testapp_note (title) VALUES ('{name}')"
                )
        yield pg


@pytest.fixture(scope="module")
def site(server: PostgresServer) -> Iterator[Site]:
    """gunicorn (gthread, 2 workers x 4 threads) on a unix socket, stopped afterwards."""
    if importlib.util.find_spec("gunicorn") is None:
        pytest.fail("gunicorn is not installed: run ./tests/run, or pip install gunicorn")
    tmp = Path(tempfile.mkdtemp(prefix="schemata-faults."))
    running_site = Site(server, tmp)
    try:
        running_site.wait_ready()
        yield running_site
    finally:
        running_site.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def load(
    site: Site,
    requests: int,
    until: Callable[[], bool] = lambda: False,
    tenants: tuple[str, ...] = TENANTS,
) -> list[Outcome]:
    """``CLIENTS`` threads, each sending up to ``requests`` requests (keep-alive) to
    ``tenants`` chosen uniformly at random, until ``until()``; every outcome, in no order."""
    outcomes: list[Outcome] = []

    def client(seed: int) -> None:
        chooser = random.Random(seed)
        connection = UnixHTTPConnection(site.socket, timeout=15)
        try:
            for _ in range(requests):
                if until():
                    break
                outcome = site.get(chooser.choice(tenants), connection)
                outcomes.append(outcome)  # list.append is atomic
                if outcome.status != 200:  # the server may have closed it
                    connection.close()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def connections_by_worker(server: PostgresServer) -> dict[str, int]:
    """Server connections of the site's workers, by worker pid."""
    with server.connect(DATABASE) as connection:
        rows = connection.execute(
            "SELECT split_part(application_name, ':', 1), count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'faults-%%' GROUP BY 1",
            [DATABASE],
        ).fetchall()
    return dict(rows)


def test_every_response_under_uniform_load_names_its_own_tenant(site: Site) -> None:
    outcomes = load(site, requests=100)

    wrong = [outcome for outcome in outcomes if not outcome.right]
    assert len(outcomes) == CLIENTS * 100
    assert wrong == []
    assert {outcome.tenant for outcome in outcomes} > set(TENANTS[:10])


def test_server_connections_per_worker_never_exceed_the_pool_cap(
    site: Site, server: PostgresServer
) -> None:
    peaks: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for worker, count in connections_by_worker(server).items():
                peaks[worker] = max(peaks.get(worker, 0), count)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    outcomes: list[Outcome] = []
    try:
        # Which worker accepts a connection is the kernel's choice: on a busy machine one may
        # take them all for a while. Load until both have served (or give up after 5 rounds).
        for _ in range(5):
            outcomes += load(site, requests=150)
            if len(peaks) == WORKERS:
                break
    finally:
        done.set()
        sampler.join()

    assert [outcome for outcome in outcomes if not outcome.right] == [], site.output()
    assert len(peaks) == WORKERS
    # A worker's schema connections, plus its "default" connection should a request use it.
    assert max(peaks.values()) <= MAX_SIZE + 1, peaks


def test_connections_left_idle_on_their_schema_across_a_restart_are_not_handed_out(
    site: Site, server: PostgresServer
) -> None:
    # Every thread of both workers leaves a connection idle on f000 (the case that sends no
    # statement before use), then the server restarts while nothing runs.
    load(site, requests=50, tenants=TENANTS[:1])
    server.restart("fast")

    outcomes = load(site, requests=10, tenants=TENANTS[:1])

    assert [outcome for outcome in outcomes if not outcome.right] == [], site.output()


def test_after_a_restart_no_request_fails_once_the_server_is_back(
    site: Site, server: PostgresServer
) -> None:
    times: dict[str, float] = {}
    stop = threading.Event()

    def restart_then_stop() -> None:
        time.sleep(0.5)
        times["restart"] = time.monotonic()
        server.restart("fast")
        times["up"] = time.monotonic()
        time.sleep(2.0)  # load goes on: long enough to pass the margin many times over
        stop.set()

    restarter = threading.Thread(target=restart_then_stop)
    restarter.start()
    try:
        outcomes = load(site, requests=5_000, until=stop.is_set)
    finally:
        restarter.join()

    ok_after = sorted(o.ended for o in outcomes if o.right and o.started >= times["up"])
    back = ok_after[0]
    failed = [o for o in outcomes if not o.right]
    late_failures = [o for o in failed if o.started >= back + MARGIN_S]
    assert late_failures == [], (times, late_failures[:5], site.output())
    # The rest failed around the restart, with an error, never with another tenant's data.
    assert all(o.status != 200 for o in failed), failed[:5]
    assert len([o for o in outcomes if o.right and o.started >= back + MARGIN_S]) > 100
    print(
        f"\nrestart took {times['up'] - times['restart']:.2f}s; first good response "
        f"{back - times['up']:.3f}s after; {len(outcomes)} requests, {len(failed)} failed "
        f"(statuses {sorted({o.status for o in failed}, key=str)}), all before "
        f"{max((o.started for o in failed), default=times['restart']) - times['restart']:.2f}s "
        f"after the restart began"
    )
