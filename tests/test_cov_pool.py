"""SchemaPool on its own, with real server connections: what it does with connections that
cannot move, died while idle, fail their check, or come back mid-transaction."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import connections
from psycopg.pq import TransactionStatus

from schemata.paths import Move, path_cursor
from schemata.pool import SchemaPool
from tests.pgserver import free_port

pytestmark = pytest.mark.django_db


class WrongPath(Exception):
    pass


@pytest.fixture
def params(db: None) -> dict[str, Any]:
    """psycopg connection parameters of the test database."""
    return connections["default"].get_connection_params()


def acquire(pool: SchemaPool, params: dict[str, Any], schema: str, **kwargs: Any) -> Any:
    def open_new() -> Any:
        return psycopg.connect(**{**params, "cursor_factory": path_cursor(psycopg.ClientCursor)})

    def verify(schemas: list[str]) -> None:
        if schemas[:1] != [schema]:
            raise WrongPath(f"on {schemas}, not {schema}")

    move = Move(f"db:{schema}", f"{schema}, public", f"schemata:{schema}", [schema], verify)
    return pool.acquire(move, open_new, reclaim=lambda: None, **kwargs)


def terminate(connection: Any) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [connection.info.backend_pid])
    time.sleep(0.1)  # the goodbye reaches the client's socket


def schema_of(connection: Any) -> str:
    return str(connection.execute("SELECT current_schema()").fetchone()[0])


def test_at_the_cap_without_moves_the_least_recent_idle_connection_is_replaced(
    params: dict[str, Any],
) -> None:
    pool = SchemaPool("default", max_size=1, timeout=1, move=False)
    alpha = acquire(pool, params, "alpha")
    pool.release(alpha, "db:alpha")

    beta = acquire(pool, params, "beta")

    assert beta is not alpha
    assert alpha.closed
    assert schema_of(beta) == "beta"
    assert (pool.size, pool.stats.opened, pool.stats.discarded) == (1, 2, 1)
    pool.release(beta, "db:beta")
    pool.close()


# Idle, and wanted by another schema: replaced instead of moved. Parked by another thread on
# the wanted schema, at the cap: replaced instead of handed out.
@pytest.mark.parametrize(("parked", "wanted"), [(False, "beta"), (True, "alpha")])
def test_a_connection_the_server_ended_is_replaced(
    params: dict[str, Any], parked: bool, wanted: str
) -> None:
    pool = SchemaPool("default", max_size=1, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    if parked:
        assert pool.park(alpha, "db:alpha", owner=object())
    else:
        pool.release(alpha, "db:alpha")
    terminate(alpha)

    again = acquire(pool, params, wanted)

    assert again is not alpha
    assert schema_of(again) == wanted
    assert (pool.stats.moved, pool.stats.discarded, pool.stats.opened, pool.size) == (0, 1, 2, 1)
    pool.release(again, f"db:{wanted}")
    pool.close()


def test_a_connection_closed_while_idle_is_not_handed_out(params: dict[str, Any]) -> None:
    pool = SchemaPool("default", max_size=2, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    pool.release(alpha, "db:alpha")
    alpha.close()

    again = acquire(pool, params, "alpha")

    assert again is not alpha
    assert schema_of(again) == "alpha"
    assert pool.stats.discarded == 1
    pool.release(again, "db:alpha")
    pool.close()


# Without health checks the move, and so its check, comes with the next statement; with them,
# at the hand-out.
@pytest.mark.parametrize("health_check", [False, True])
def test_a_move_that_fails_its_check_raises_and_the_connection_stays_in_the_pool(
    params: dict[str, Any], health_check: bool
) -> None:
    pool = SchemaPool("default", max_size=1, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    pool.release(alpha, "db:alpha")

    with pytest.raises(WrongPath, match="not missing"):  # the path resolves to public only
        schema_of(acquire(pool, params, "missing", health_check=health_check))

    if not health_check:
        pool.release(alpha, "db:missing")  # handed out: given back as a wrapper would
    assert pool.size == 1 and not alpha.closed
    assert acquire(pool, params, "beta") is alpha
    assert schema_of(alpha) == "beta"
    pool.release(alpha, "db:beta")
    pool.close()


def test_a_connection_given_back_inside_a_transaction_is_rolled_back(
    params: dict[str, Any],
) -> None:
    pool = SchemaPool("default", max_size=1, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    alpha.autocommit = False
    alpha.execute("INSERT INTO testapp_note (title) VALUES ('never')")
    assert alpha.info.transaction_status == TransactionStatus.INTRANS

    pool.release(alpha, "db:alpha")

    assert acquire(pool, params, "alpha") is alpha
    assert alpha.autocommit
    assert alpha.execute("SELECT count(*) FROM testapp_note WHERE title = 'never'").fetchone() == (
        0,
    )
    pool.release(alpha, "db:alpha")
    pool.close()


def test_a_connection_whose_rollback_fails_is_discarded(params: dict[str, Any]) -> None:
    pool = SchemaPool("default", max_size=1, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    alpha.autocommit = False
    alpha.execute("SELECT 1")
    terminate(alpha)

    pool.release(alpha, "db:alpha")

    assert alpha.closed
    assert (pool.size, pool.stats.discarded) == (0, 1)
    pool.close()


def test_an_idle_connection_on_a_descriptor_above_1023_is_kept(params: dict[str, Any]) -> None:
    # A process with many files open (a busy server) hands out descriptors from 1024 up,
    # which select() refuses: every idle connection then looked terminated, and was dropped.
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), max(hard, 2048)))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        pool = SchemaPool("default", max_size=1, timeout=1, move=True)
        alpha = acquire(pool, params, "alpha")
        assert alpha.fileno() >= 1024
        pool.release(alpha, "db:alpha")

        again = acquire(pool, params, "alpha")

        assert again is alpha
        assert pool.stats.kept == 1 and pool.stats.discarded == 0
        pool.release(again, "db:alpha")
        pool.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class CuttingProxy:
    """A TCP proxy to the server's unix socket that can cut its current connections off from
    the server while their client sockets stay open and quiet: to the client such a
    connection looks alive until it next sends something, which the proxy then hangs up on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.cut: set[int] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.upstream)
            self.pairs.append((client, server))
            for args in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if id(source) in self.cut:  # the client spoke on a cut connection
                    break
                target.sendall(data)
        if not from_client and id(source) in self.cut:
            return  # the server side was cut: leave the client's open
        for sock in (source, target):
            _hang_up(sock)

    def cut_off(self) -> None:
        """Close the server side of every current connection; keep the client side open."""
        for client, server in self.pairs:
            self.cut.add(id(client))
            self.cut.add(id(server))
            _hang_up(server)

    def close(self) -> None:
        self.listener.close()
        for pair in self.pairs:
            for sock in pair:
                _hang_up(sock)


def _hang_up(sock: socket.socket) -> None:
    # shutdown() first: close() alone leaves the socket open while another thread is in recv().
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# Kept on its schema, or moved to another: either is checked, and replaced when dead.
@pytest.mark.parametrize("wanted", ["alpha", "beta"])
def test_with_health_checks_a_dead_connection_is_replaced_before_it_is_handed_out(
    params: dict[str, Any], wanted: str
) -> None:
    proxy = CuttingProxy(f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}")
    through = {**params, "host": "127.0.0.1", "port": proxy.port}
    pool = SchemaPool("default", max_size=1, timeout=1, move=True)
    try:
        alpha = acquire(pool, through, "alpha")
        pool.release(alpha, "db:alpha")
        proxy.cut_off()

        again = acquire(pool, through, wanted, health_check=True)

        assert again is not alpha
        assert alpha.closed
        assert schema_of(again) == wanted
        assert (pool.stats.discarded, pool.stats.moved, pool.size) == (1, 0, 1)
        pool.release(again, f"db:{wanted}")
    finally:
        pool.close()
        proxy.close()
        gone(["schemata:alpha", f"schemata:{wanted}"])


def gone(application_names: list[str]) -> None:
    """Wait until the server has ended the sessions of these names (a client that went away
    ends its session a moment later)."""
    deadline = time.monotonic() + 10
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s)",
                [application_names],
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)


def slot(name: str, max_size: int) -> int:
    """The slot of schema ``name`` in a pool of ``max_size`` (keys as ``acquire`` gives them)."""
    import zlib

    return zlib.crc32(f"db:{name}".encode()) % max_size


NAMES = [f"t{i:02}" for i in range(40)]


def slotted_names() -> tuple[str, str, str]:
    """Three schemas for a pool of 2: the first and second in different slots, the third in
    the second's."""
    first = NAMES[0]
    second = next(name for name in NAMES if slot(name, 2) != slot(first, 2))
    third = next(n for n in NAMES if n not in (first, second) and slot(n, 2) == slot(second, 2))
    return first, second, third


def test_at_the_cap_the_connection_in_the_schemas_slot_is_moved_not_the_oldest(
    params: dict[str, Any],
) -> None:
    pool = SchemaPool("default", max_size=2, timeout=1, move=True)
    first, second, third = slotted_names()
    a = acquire(pool, params, first)
    b = acquire(pool, params, second)
    pool.release(a, f"db:{first}")  # the oldest idle connection
    pool.release(b, f"db:{second}")

    c = acquire(pool, params, third)

    assert c is b
    assert schema_of(c) == third
    assert pool.stats.moved == 1
    pool.release(c, f"db:{third}")
    pool.close()


def test_at_the_cap_the_parked_connection_in_the_schemas_slot_is_taken(
    params: dict[str, Any],
) -> None:
    pool = SchemaPool("default", max_size=2, timeout=1, move=True)
    first, second, third = slotted_names()
    a = acquire(pool, params, first)
    b = acquire(pool, params, second)
    assert pool.park(a, f"db:{first}", owner=object())  # parked longest ago
    assert pool.park(b, f"db:{second}", owner=object())

    c = acquire(pool, params, third)

    assert c is b
    assert schema_of(c) == third
    pool.release(c, f"db:{third}")
    pool.close()


def test_each_server_process_serves_the_schemas_of_one_slot_only(params: dict[str, Any]) -> None:
    # A server process keeps the catalog entries of every table it has read: spread over all
    # the pool's connections, every one of them would hold every schema's.
    max_size = 4
    pool = SchemaPool("default", max_size=max_size, timeout=1, move=True)
    fill = [next(n for n in NAMES if slot(n, max_size) == i) for i in range(max_size)]
    rng = random.Random(7)
    served: dict[int, set[str]] = {}
    for name in fill + [rng.choice(NAMES) for _ in range(200)]:
        connection = acquire(pool, params, name)
        assert schema_of(connection) == name
        served.setdefault(connection.info.backend_pid, set()).add(name)
        pool.release(connection, f"db:{name}")

    assert len(served) == max_size
    for names in served.values():
        assert len({slot(name, max_size) for name in names}) == 1, names
    assert pool.stats.moved > 100
    pool.close()


def test_at_the_cap_a_parked_connection_on_the_schema_beats_moving_an_idle_one(
    params: dict[str, Any],
) -> None:
    pool = SchemaPool("default", max_size=2, timeout=1, move=True)
    alpha = acquire(pool, params, "alpha")
    beta = acquire(pool, params, "beta")
    assert pool.park(alpha, "db:alpha", owner=object())  # another thread's, between requests
    pool.release(beta, "db:beta")

    again = acquire(pool, params, "alpha")

    assert again is alpha
    assert (pool.stats.moved, pool.stats.kept) == (0, 1)
    pool.release(again, "db:alpha")
    pool.close()


def test_a_forked_child_giving_back_an_inherited_connection_leaves_it_open(
    params: dict[str, Any],
) -> None:
    from schemata.pool import _pools, get_pool

    pool = get_pool("forked", max_size=1, timeout=1, move=True)
    try:
        alpha = acquire(pool, params, "alpha")  # in use when the process forks
        child = os.fork()
        if child == 0:
            # Closing it here would end the parent's session on the server.
            pool.release(alpha, "db:alpha")
            os._exit(0 if not alpha.closed else 1)
        _, status = os.waitpid(child, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert schema_of(alpha) == "alpha"  # the parent's session goes on
        pool.release(alpha, "db:alpha")
    finally:
        _pools.pop("forked").close()


def test_a_connection_given_back_to_a_pool_that_never_counted_it_is_closed(
    params: dict[str, Any],
) -> None:
    # A wrapper that kept its connection across a settings change gives it back to the pool
    # made anew since, which does not count it.
    old = SchemaPool("default", max_size=1, timeout=1, move=True)
    alpha = acquire(old, params, "alpha")
    new = SchemaPool("default", max_size=1, timeout=1, move=True)

    new.release(alpha, "db:alpha")

    assert alpha.closed
    assert (new.size, new.stats.discarded) == (0, 1)
    old.close()
