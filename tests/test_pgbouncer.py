"""PgBouncer 1.18 in front of the schema aliases, and the [databases] section made for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.core.signals import request_finished, request_started
from django.db import connections
from django.db.utils import OperationalError
from django.test import Client, override_settings

import schemata
from schemata import SchemaUnavailable, expand_databases
from schemata.pool import SchemaPool, get_pool
from tests import pgbouncer as bouncers
from tests.pgbouncer import PgBouncer
from tests.testapp.models import Note

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

Start = Callable[..., PgBouncer]
pgbouncer = bouncers.pgbouncer  # the session fixture, for this module's tests
#: Enough schemas to need more server connections than the caps allow.
NAMES = ("t00", "t01", "t02", "t03", "t04", "t05")
SHOP = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "/run/postgresql"}
TWO = {"alpha.example.com": {"schema_name": "alpha"}, "beta.example.com": {"schema_name": "beta"}}


def generate(*args: str, **settings_: Any) -> list[str]:
    """The command's output lines, under ``settings_`` (two schemas on a 'shop' database)."""
    values: dict[str, Any] = {
        "SCHEMATA_SCHEMA_DATABASE": "app_{schema}",
        "SCHEMATA_DOMAINS": TWO,
        "DATABASES": expand_databases({"default": SHOP}, TWO),
        **settings_,
    }
    out = StringIO()
    with override_settings(**values):
        call_command("pgbouncer_databases", *args, stdout=out)
    return out.getvalue().splitlines()


COMMENTS = [
    "; One database per schema of DATABASES['default']; its connect_query sets the search path.",
    "; pool_size caps each schema's server connections; in [pgbouncer], max_user_connections",
    "; caps those of one user in all of them together (max_db_connections: each one's).",
    "; Use pool_mode = transaction, or in session mode set server_reset_query = DEALLOCATE ALL:",
    "; DISCARD ALL, its default, resets the search path.",
]


class TestCommand:
    def test_each_schema_gets_a_database_whose_connect_query_sets_its_path(self) -> None:
        lines = generate("--pool-size", "3")

        assert lines == [
            "[databases]",
            *COMMENTS,
            "shop = host=/run/postgresql dbname=shop",
            "app_alpha = host=/run/postgresql dbname=shop pool_size=3 "
            "connect_query='SELECT set_config(''search_path'', ''alpha'', false)'",
            "app_beta = host=/run/postgresql dbname=shop pool_size=3 "
            "connect_query='SELECT set_config(''search_path'', ''beta'', false)'",
        ]

    def test_with_shared_apps_the_path_has_the_guard_and_public(self) -> None:
        lines = generate("--verbosity", "0", SCHEMATA_SHARED_APPS=["auth"])

        assert lines[2] == (
            "app_alpha = host=/run/postgresql dbname=shop connect_query='SELECT "
            "set_config(''search_path'', ''alpha,schemata_guard,public'', false)'"
        )

    def test_verbosity_0_prints_the_section_only(self) -> None:
        lines = generate("--verbosity", "0")

        assert lines == [
            "[databases]",
            "shop = host=/run/postgresql dbname=shop",
            "app_alpha = host=/run/postgresql dbname=shop "
            "connect_query='SELECT set_config(''search_path'', ''alpha'', false)'",
            "app_beta = host=/run/postgresql dbname=shop "
            "connect_query='SELECT set_config(''search_path'', ''beta'', false)'",
        ]

    def test_host_and_port_name_the_real_server_and_are_quoted_when_needed(self) -> None:
        lines = generate("-v", "0", "--host", "/var/run/my pg", "--port", "5433")

        assert lines[1] == "shop = host='/var/run/my pg' port=5433 dbname=shop"
        assert lines[2].startswith("app_alpha = host='/var/run/my pg' port=5433 dbname=shop ")

    def test_the_base_alias_port_is_kept(self) -> None:
        base = {**SHOP, "HOST": "db.internal", "PORT": 5433}

        lines = generate("-v", "0", DATABASES=expand_databases({"default": base}, TWO))

        assert lines[1] == "shop = host=db.internal port=5433 dbname=shop"

    def test_another_base_alias_lists_only_its_own_schemas(self) -> None:
        databases = expand_databases({"default": SHOP, "other": {**SHOP, "NAME": "o"}}, TWO)

        lines = generate("-v", "0", "--database", "other", DATABASES=databases)

        assert lines == ["[databases]", "o = host=/run/postgresql dbname=o"]

    @pytest.mark.parametrize(
        ("args", "values", "message"),
        [
            (
                [],
                {"SCHEMATA_SCHEMA_DATABASE": None},
                "SCHEMATA_SCHEMA_DATABASE is not set: set it to the name of each schema's "
                "PgBouncer database, e.g. SCHEMATA_SCHEMA_DATABASE = 'app_{schema}', so that "
                "schema aliases connect to them.",
            ),
            (
                [],
                {"SCHEMATA_SCHEMA_DATABASE": "tenants"},
                "SCHEMATA_SCHEMA_DATABASE = 'tenants' gives schema 'beta' the database name "
                "'tenants', already taken: put '{schema}' in it, and keep it apart from the "
                "base database's NAME.",
            ),
            (
                [],
                {"SCHEMATA_SCHEMA_DATABASE": "{name}"},
                "SCHEMATA_SCHEMA_DATABASE = '{name}' is not a template with '{schema}' only: "
                "KeyError('name').",
            ),
            (
                [],
                {"SCHEMATA_SCHEMA_DATABASE": "app {schema}"},
                "SCHEMATA_SCHEMA_DATABASE = 'app {schema}' gives schema 'alpha' the database "
                "name 'app alpha': use letters, digits, '_', '.' and '-' only.",
            ),
            (["--pool-size", "0"], {}, "--pool-size must be at least 1."),
            (["--port", "0"], {}, "--port must be between 1 and 65535."),
            (
                ["--database", "alpha"],
                {},
                "Unknown database alias 'alpha': name a DATABASES entry.",
            ),
        ],
    )
    def test_bad_input_is_refused(
        self, args: list[str], values: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(CommandError) as excinfo:
            generate(*args, **values)

        assert str(excinfo.value) == message


# --- PgBouncer in front of the test database ----------------------------------------------


def real_database() -> dict[str, Any]:
    """The test database's own settings (the base alias, straight to PostgreSQL)."""
    return dict(settings.DATABASES["default"])


def section(*args: str) -> str:
    """The [databases] section the command makes for the test database."""
    out = StringIO()
    with override_settings(SCHEMATA_SCHEMA_DATABASE="app_{schema}"):
        call_command("pgbouncer_databases", *args, stdout=out)
    return out.getvalue()


@contextmanager
def through(server: PgBouncer, **values: Any) -> Iterator[None]:
    """Run the block with the base alias pointed at ``server``."""
    databases = expand_databases(
        {"default": server.database(real_database())}, settings.SCHEMATA_DOMAINS
    )
    try:
        with override_settings(DATABASES=databases, **values):
            yield
    finally:
        connections.close_all()


def pool() -> SchemaPool:
    from schemata.conf import conf

    return get_pool(
        "default", conf.POOL.max_size, conf.POOL.timeout, move=conf.SCHEMA_DATABASE is None
    )


def peak_while(server: PgBouncer, work: Callable[[], None]) -> int:
    """The most server connections ``server`` held at once while ``work`` ran."""
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.servers())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return peak


def serve_concurrently(names: tuple[str, ...], rounds: int) -> list[BaseException]:
    """Threads that each read ``rounds`` times from every schema, as requests do."""
    errors: list[BaseException] = []

    def serve(offset: int) -> None:
        try:
            for i in range(rounds):
                name = names[(offset + i) % len(names)]
                request_started.send(sender=None)
                with schemata.override(name):
                    titles = list(Note.objects.values_list("title", flat=True))
                request_finished.send(sender=None)
                assert titles == [name], (name, titles)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture
def marked(light_schemas: tuple[str, ...]) -> tuple[str, ...]:
    """One committed row in each of NAMES whose title is the schema's name."""
    with connections["default"].cursor() as cursor:
        for name in NAMES:
            cursor.execute(f"INSERT INTO {name}.testapp_note (title) VALUES (%s)", [name])
    return NAMES


def titles_per_host(names: tuple[str, ...]) -> list[list[str]]:
    client = Client()
    return [client.get("/", HTTP_HOST=f"{name}.example.com").json()["notes"] for name in names]


@pytest.mark.django_db(transaction=True)
class TestTransactionMode:
    """A server connection per transaction: the path must come with the database."""

    @pytest.fixture
    def server(self, pgbouncer: Start) -> PgBouncer:
        return pgbouncer(
            section("--pool-size", "2"),
            real_database()["USER"],
            pool_mode="transaction",
            max_user_connections=2,
        )

    def test_each_tenant_gets_its_own_rows_and_no_connection_is_moved(
        self, server: PgBouncer, marked: tuple[str, ...]
    ) -> None:
        with through(server, SCHEMATA_SCHEMA_DATABASE="app_{schema}"):
            titles = titles_per_host(marked + marked)
            stats = pool().stats

        assert titles == [[name] for name in marked + marked]
        assert (stats.moved, stats.opened) == (0, len(marked))  # the second visits: none new

    def test_max_user_connections_caps_the_server_connections_of_all_schemas(
        self, server: PgBouncer, marked: tuple[str, ...]
    ) -> None:
        errors: list[BaseException] = []

        with through(
            server,
            SCHEMATA_SCHEMA_DATABASE="app_{schema}",
            SCHEMATA_POOL={"max_size": 6, "timeout": 5},
        ):
            peak = peak_while(server, lambda: errors.extend(serve_concurrently(marked, 20)))

        assert errors == []
        assert 1 <= peak <= 2


@pytest.mark.django_db(transaction=True)
class TestSessionMode:
    """One server connection per client connection, given back when the client leaves."""

    def start(self, pgbouncer: Start, **values: str | int) -> PgBouncer:
        return pgbouncer(section(), real_database()["USER"], **values)

    def test_a_database_per_schema_keeps_its_path_when_reset_query_keeps_it(
        self, pgbouncer: Start, marked: tuple[str, ...]
    ) -> None:
        server = self.start(pgbouncer, server_reset_query="DEALLOCATE ALL")

        with through(
            server,
            SCHEMATA_SCHEMA_DATABASE="app_{schema}",
            SCHEMATA_POOL={"max_size": 1, "timeout": 5},
        ):
            titles = titles_per_host(marked + marked)
            stats = pool().stats

        assert titles == [[name] for name in marked + marked]
        assert (stats.moved, stats.opened) == (0, 2 * len(marked))
        assert server.servers() == len(marked)  # the second clients got the first's servers

    def test_discard_all_resets_the_path_and_the_next_client_is_refused(
        self, pgbouncer: Start, marked: tuple[str, ...]
    ) -> None:
        server = self.start(pgbouncer)

        with through(
            server,
            SCHEMATA_SCHEMA_DATABASE="app_{schema}",
            SCHEMATA_POOL={"max_size": 1, "timeout": 5},
        ):
            first = titles_per_host(("t00", "t01"))
            with pytest.raises(SchemaUnavailable) as excinfo:
                titles_per_host(("t00",))

        assert first == [["t00"], ["t01"]]
        assert str(excinfo.value).startswith(
            "The schema 't00' (database alias 't00') does not exist in database 'app_t00' "
            "or its role may not use it (current_schema() is 'public')."
        )


@pytest.mark.django_db(transaction=True)
class TestOneDatabaseInSessionMode:
    """Every schema through one PgBouncer database: the pool moves connections itself."""

    def test_schemas_share_server_connections_moved_by_the_pool(
        self, pgbouncer: Start, marked: tuple[str, ...]
    ) -> None:
        server = pgbouncer(section(), real_database()["USER"])

        with through(server, SCHEMATA_POOL={"max_size": 2, "timeout": 5}):
            errors = serve_concurrently(marked, 20)
            titles = titles_per_host(marked)
            stats, size = pool().stats, pool().size

        assert errors == []
        assert titles == [[name] for name in marked]
        assert stats.moved > 0
        assert size <= 2

    def test_a_path_in_the_startup_options_is_refused_with_pgbouncers_words(
        self, pgbouncer: Start
    ) -> None:
        # What a schema alias sent before: PgBouncer 1.18 refuses any libpq options.
        server = pgbouncer(section(), real_database()["USER"])
        base = {**real_database(), "OPTIONS": {"options": "-c search_path=alpha"}}
        databases = expand_databases({"default": server.database(base)}, settings.SCHEMATA_DOMAINS)

        with override_settings(DATABASES=databases), pytest.raises(OperationalError) as excinfo:
            titles_per_host(("alpha",))
        connections.close_all()

        assert str(excinfo.value) == (
            f'connection failed: connection to server on socket "{server.socket_dir}/'
            f'.s.PGSQL.6432" failed: FATAL:  unsupported startup parameter: options'
        )
