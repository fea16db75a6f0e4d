"""django-schemata on a real Citus cluster (a coordinator and two workers) with schema-based
sharding: each tenant schema a distributed schema, placed on a worker.

The project (tests/citus_settings.py) runs in subprocesses (commands, gunicorn, pytest) against
the cluster's database; the tests read the cluster's catalog directly.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.citus import Cluster, citus_cluster  # noqa: F401  (the fixture, by name)
from tests.services import UnixHTTPConnection, stop

TENANTS = ("t1", "t2", "t3", "t4", "t5", "t6")
TENANT_TABLES = ("citus_tenant_line", "citus_tenant_order", "django_migrations")
DATABASE = "shop"


@dataclass
class Project:
    """The Citus tests' project, run against one database of the cluster."""

    cluster: Cluster
    database: str
    tmp: Path
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.url(self.database)

    def env(self, tenants: tuple[str, ...] = TENANTS) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.citus_settings",
            "DATABASE_URL": self.url,
            "CITUS_TENANTS": ",".join(tenants),
        }

    def django(
        self, *args: str, tenants: tuple[str, ...] = TENANTS
    ) -> subprocess.CompletedProcess[str]:
        """``python -m django ARGS`` in a fresh interpreter; its output and exit status."""
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            env=self.env(tenants),
        )

    def python(self, code: str, tenants: tuple[str, ...] = TENANTS) -> str:
        """What ``code`` prints, run after ``django.setup()`` (its stderr on failure)."""
        result = self.django("shell", "-v0", "-c", code, tenants=tenants)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of ``sql`` run on the coordinator (none for a statement without)."""
        with self.cluster.coordinator.connect(self.database) as connection:  # type: ignore[attr-defined]
            cursor = connection.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def placements(self) -> dict[str, int]:
        """The port of the node holding each tenant schema."""
        rows = self.query(
            "SELECT DISTINCT s.schema_name::text, h.nodeport FROM citus_schemas s "
            "JOIN citus_shards h ON h.colocation_id = s.colocation_id"
        )
        return {str(name): int(port) for name, port in rows}  # type: ignore[call-overload]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def project(citus_cluster: Cluster) -> Iterator[Project]:  # noqa: F811
    """The project's database on the cluster: migrated, its tenants created with
    ``manage_schemata`` and migrated with ``migrate_schemata --parallel 2``, one order each."""
    tmp = Path(tempfile.mkdtemp(prefix="schemata-citus."))
    citus_cluster.create_database(DATABASE)
    site = Project(citus_cluster, DATABASE, tmp)
    try:
        ok(site.django("migrate", "-v0"))
        site.outputs["manage_schemata"] = ok(site.django("manage_schemata"))
        site.outputs["migrate_schemata"] = ok(site.django("migrate_schemata", "--parallel", "2"))
        with citus_cluster.coordinator.connect(DATABASE) as connection:  # type: ignore[attr-defined]
            connection.execute("INSERT INTO citus_shared_plan (name) VALUES ('gold'), ('free')")
            for name in TENANTS:
                connection.execute(
                    f"INSERT INTO {name}.citus_tenant_order (title, plan_id) "
                    f"SELECT '{name}', id FROM citus_shared_plan WHERE name = 'gold'"
                )
        yield site
    finally:
        citus_cluster.drop_database(DATABASE)
        shutil.rmtree(tmp, ignore_errors=True)


def test_migrate_schemata_in_parallel_puts_every_tenant_table_in_its_distributed_schema(
    project: Project,
) -> None:
    schemas = project.query("SELECT schema_name::text FROM citus_schemas ORDER BY 1")
    shards = project.query(
        "SELECT table_name::text FROM citus_shards WHERE citus_table_type = 'schema'"
    )

    assert project.outputs["manage_schemata"] == "".join(f"{t}: created\n" for t in TENANTS)
    assert "Summary: 6 applied." in project.outputs["migrate_schemata"]
    assert [row[0] for row in schemas] == list(TENANTS)
    assert sorted(str(row[0]) for row in shards) == sorted(
        f"{t}.{table}" for t in TENANTS for table in TENANT_TABLES
    )


def test_tenants_are_spread_over_both_workers(project: Project) -> None:
    workers = {worker.port for worker in project.cluster.workers}

    placements = project.placements()

    assert set(placements) == set(TENANTS)
    assert set(placements.values()) == workers


def test_the_placements_helper_says_where_each_tenant_is(project: Project) -> None:
    output = project.python(
        "from schemata.citus import placements\n"
        "print({name: port for name, (host, port) in placements().items()})"
    )

    assert output == str(project.placements())


def test_shared_apps_tables_become_reference_tables_but_the_packages_own_stay_local(
    project: Project,
) -> None:
    rows = project.query(
        "SELECT c.relname, coalesce(t.citus_table_type, 'local') FROM pg_class c "
        "LEFT JOIN citus_tables t ON t.table_name = c.oid "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
    )
    kinds = {row[0]: row[1] for row in rows}

    assert kinds["citus_shared_plan"] == "reference"
    assert kinds["django_content_type"] == "reference"
    assert kinds["schemata_tenant"] == "local"


def test_tenant_tables_foreign_keys_to_shared_tables_are_enforced(project: Project) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        project.query("INSERT INTO t1.citus_tenant_order (title, plan_id) VALUES ('x', -1)")


def test_the_reference_tables_command_is_safe_to_rerun(project: Project) -> None:
    result = project.django("citus_reference_tables")

    assert ok(result) == "Every shared table is a reference table already.\n"


def test_the_reference_tables_command_without_citus_says_what_to_do(project: Project) -> None:
    with project.cluster.coordinator.connect() as connection:  # type: ignore[attr-defined]
        connection.execute('CREATE DATABASE "plain"')
    plain = Project(project.cluster, "plain", project.tmp)
    try:
        result = plain.django("citus_reference_tables")
    finally:
        with project.cluster.coordinator.connect() as connection:  # type: ignore[attr-defined]
            connection.execute('DROP DATABASE "plain" WITH (FORCE)')

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "CommandError: The database of 'default' has no citus extension: run CREATE "
        "EXTENSION citus there (and add the workers) first."
    )


def test_manage_schemata_lists_none_of_citus_schemas_as_orphans(project: Project) -> None:
    present = {row[0] for row in project.query("SELECT nspname::text FROM pg_namespace")}

    output = ok(project.django("manage_schemata"))

    assert {"citus", "citus_internal"} <= present
    assert output == "".join(f"{t}: exists\n" for t in TENANTS)


def test_the_guard_schema_stays_on_the_coordinator(project: Project) -> None:
    distributed = project.query(
        "SELECT 1 FROM citus_schemas WHERE schema_name = 'schemata_guard'::regnamespace"
    )
    views = project.query(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'schemata_guard'::regnamespace "
        "AND relkind = 'v'"
    )

    assert distributed == []
    assert int(views[0][0]) > 0  # type: ignore[call-overload]


def test_the_guard_still_stops_a_tenant_table_missing_from_a_distributed_schema(
    project: Project,
) -> None:
    import psycopg

    with project.cluster.coordinator.connect(project.database) as connection:  # type: ignore[attr-defined]
        connection.execute("CREATE SCHEMA bare")
        try:
            assert connection.execute(
                "SELECT 1 FROM citus_schemas WHERE schema_name = 'bare'::regnamespace"
            ).fetchall()
            connection.execute("SET search_path = bare, schemata_guard, public")
            with pytest.raises(psycopg.errors.InvalidSchemaName) as error:
                connection.execute("SELECT * FROM citus_tenant_order")
        finally:
            connection.execute("DROP SCHEMA bare CASCADE")

    assert 'the table "citus_tenant_order" is not in the schema "bare"' in str(error.value)


def test_cloning_makes_a_distributed_copy_with_the_templates_rows(project: Project) -> None:
    tenants = (*TENANTS, "c1")

    project.python("from schemata.citus import clone_schema; clone_schema('t1', 'c1')", tenants)
    try:
        distributed = project.query(
            "SELECT 1 FROM citus_schemas WHERE schema_name = 'c1'::regnamespace"
        )
        project.query(
            "INSERT INTO c1.citus_tenant_order (title, plan_id) SELECT 'c1', plan_id "
            "FROM c1.citus_tenant_order"
        )
        rows = project.query("SELECT title FROM c1.citus_tenant_order ORDER BY id")
        migrated = ok(project.django("migrate_schemata", "--schema", "c1", tenants=tenants))
    finally:
        project.query("DROP SCHEMA c1 CASCADE")

    assert distributed == [(1,)]
    assert rows == [("t1",), ("c1",)]
    assert migrated == "Summary: 1 up to date.\n"


def test_manage_schemata_clones_through_citus_own_way(project: Project) -> None:
    tenants = (*TENANTS, "c3")

    created = project.django("manage_schemata", "--clone-from", "t1", tenants=tenants)
    try:
        distributed = project.query(
            "SELECT 1 FROM citus_schemas WHERE schema_name = 'c3'::regnamespace"
        )
        rows = project.query("SELECT title FROM c3.citus_tenant_order ORDER BY id")
    finally:
        project.query("DROP SCHEMA IF EXISTS c3 CASCADE")

    assert "c3: created from t1" in ok(created)
    assert distributed == [(1,)]
    assert rows == [("t1",)]


def test_move_app_between_distributed_schemas_is_refused_with_a_clear_error(
    project: Project,
) -> None:
    tenants = (*TENANTS, "c4")

    result = project.django(
        "move_app", "citus_tenant", "--from", "t1", "--to", "c4", tenants=tenants
    )

    assert result.returncode == 1
    assert (
        "CommandError: t1 is a distributed schema of Citus, which refuses to move tables into "
        "or out of one (ALTER TABLE ... SET SCHEMA); nothing was moved."
    ) in result.stderr
    assert project.query("SELECT count(*) FROM t1.citus_tenant_order") == [(1,)]
    assert project.query("SELECT to_regnamespace('c4') IS NULL") == [(True,)]


def test_cloning_refuses_an_unmigrated_template(project: Project) -> None:
    result = project.django(
        "shell", "-c", "from schemata.citus import clone_schema; clone_schema('nowhere', 'c2')"
    )

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "schemata.exceptions.SchemataError: The template 'nowhere' is not a migrated schema: "
        "migrate it first."
    )


def test_cloning_refuses_a_bad_name_and_an_existing_schema(project: Project) -> None:
    output = project.python(
        "from schemata.exceptions import SchemataError\n"
        "from schemata.citus import clone_schema\n"
        "for name in ['Bad-Name', 't2']:\n"
        "    try:\n"
        "        clone_schema('t1', name)\n"
        "    except SchemataError as exc:\n"
        "        print(exc)\n"
    )

    assert output.splitlines() == [
        "schema name 'Bad-Name' is invalid: use 1 to 63 lower-case ASCII letters, digits and "
        "underscores, not starting with a digit.",
        "The schema 't2' already exists.",
    ]
    assert project.query("SELECT to_regnamespace('Bad-Name') IS NULL") == [(True,)]


def test_cloning_with_sharding_off_makes_a_plain_schema_with_the_templates_rows(
    project: Project,
) -> None:
    tenants = (*TENANTS, "c5")

    project.python(
        "from django.db import connection\n"
        "from schemata.citus import clone_schema\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SET citus.enable_schema_based_sharding = off')\n"
        "clone_schema('t1', 'c5')\n",
        tenants,
    )
    try:
        distributed = project.query(
            "SELECT 1 FROM citus_schemas WHERE schema_name = 'c5'::regnamespace"
        )
        rows = project.query("SELECT title FROM c5.citus_tenant_order ORDER BY id")
    finally:
        project.query("DROP SCHEMA c5 CASCADE")

    assert distributed == []
    assert rows == [("t1",)]


@pytest.fixture(scope="module")
def bare(project: Project) -> Iterator[Project]:
    """A database of the cluster with Citus and its nodes, but not migrated."""
    project.cluster.create_database("bare")
    try:
        yield Project(project.cluster, "bare", project.tmp)
    finally:
        project.cluster.drop_database("bare")


def test_the_reference_tables_command_converts_referenced_tables_first(bare: Project) -> None:
    bare.query("CREATE TABLE django_content_type (id int PRIMARY KEY)")
    bare.query(
        "CREATE TABLE citus_shared_plan (id int PRIMARY KEY, "
        "kind_id int REFERENCES django_content_type)"
    )
    try:
        result = bare.django("citus_reference_tables")
        kinds = bare.query(
            "SELECT table_name::text, citus_table_type FROM citus_tables ORDER BY 1"
        )
    finally:
        bare.query("DROP TABLE citus_shared_plan, django_content_type")

    assert ok(result) == (
        "public.django_content_type: now a reference table\n"
        "public.citus_shared_plan: now a reference table\n"
    )
    assert kinds == [("citus_shared_plan", "reference"), ("django_content_type", "reference")]


def test_the_reference_tables_command_refuses_foreign_keys_in_a_cycle(bare: Project) -> None:
    bare.query("CREATE TABLE django_content_type (id int PRIMARY KEY, plan_id int)")
    bare.query(
        "CREATE TABLE citus_shared_plan (id int PRIMARY KEY, "
        "kind_id int REFERENCES django_content_type)"
    )
    bare.query(
        "ALTER TABLE django_content_type ADD FOREIGN KEY (plan_id) REFERENCES citus_shared_plan"
    )
    try:
        result = bare.django("citus_reference_tables")
        kinds = bare.query("SELECT count(*) FROM citus_tables")
    finally:
        bare.query("DROP TABLE citus_shared_plan, django_content_type CASCADE")

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "CommandError: Foreign keys between ['citus_shared_plan', 'django_content_type'] form "
        "a cycle: convert them with create_reference_table() after dropping one of the keys."
    )
    assert kinds == [(0,)]


def test_the_reference_tables_command_without_shared_tables_says_so(project: Project) -> None:
    result = project.django(
        "shell",
        "-c",
        "from django.core.management import call_command\n"
        "from django.test import override_settings\n"
        "with override_settings(SCHEMATA_SHARED_APPS=[]):\n"
        "    call_command('citus_reference_tables')\n",
    )

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "CommandError: SCHEMATA_SHARED_APPS names no app with tables: nothing to do."
    )


def test_move_schema_refuses_what_it_cannot_move(project: Project) -> None:
    worker = project.cluster.workers[0].port

    output = project.python(
        "from schemata.citus import CitusError, move_to_node\n"
        f"for args in [('public', '127.0.0.1', {worker}), ('t1', '127.0.0.1', 1)]:\n"
        "    try:\n"
        "        move_to_node(*args)\n"
        "    except CitusError as exc:\n"
        "        print(exc)\n"
    )

    assert output.splitlines() == [
        "'public' is not a distributed schema: create it with citus.enable_schema_based_sharding "
        "on (manage_schemata does, when it is on for the database), or distribute it with "
        "citus_schema_distribute().",
        "There is no Citus node 127.0.0.1:1: see citus_get_active_worker_nodes().",
    ]


def test_move_to_node_refuses_while_a_node_commits_asynchronously(project: Project) -> None:
    worker = project.cluster.workers[1]
    # For the worker's new sessions only (the nodes' setting is on their command line).
    set_on_worker = (
        "SET citus.enable_ddl_propagation = off; "
        f"ALTER DATABASE {project.database} SET synchronous_commit = "
    )
    with worker.connect(project.database) as connection:  # type: ignore[attr-defined]
        connection.execute(set_on_worker + "off")
    placements = project.placements()
    try:
        output = project.python(
            "from schemata.citus import CitusError, move_to_node\n"
            "try:\n"
            f"    move_to_node('t1', '127.0.0.1', {project.cluster.workers[0].port})\n"
            "except CitusError as exc:\n"
            "    print(exc)\n"
        )
    finally:
        with worker.connect(project.database) as connection:  # type: ignore[attr-defined]
            connection.execute(set_on_worker + "on")

    assert output == (
        f"synchronous_commit is off on 127.0.0.1:{worker.port}: writes made while the schema "
        f"moves could be lost. Turn it on there for the move (ALTER SYSTEM SET "
        f"synchronous_commit = on; SELECT pg_reload_conf();)."
    )
    assert project.placements() == placements


@dataclass
class Outcome:
    tenant: str
    method: str
    status: int | None
    body: dict[str, object] | None = None
    error: str = ""

    @property
    def right(self) -> bool:
        """A good response naming its own tenant, with that tenant's orders only."""
        if self.status != 200 or self.body is None or self.body["schema"] != self.tenant:
            return False
        orders = self.body["orders"]
        assert isinstance(orders, list)
        return bool(orders) and all(
            title in (self.tenant, f"{self.tenant}-new") and plan == "gold"
            for title, plan in orders
        )


class Site:
    """gunicorn (gthread, 2 workers x 2 threads) serving the project on a unix socket."""

    def __init__(self, project: Project) -> None:
        self.socket = str(project.tmp / "gunicorn.sock")
        self.log = project.tmp / "gunicorn.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "django.core.wsgi:get_wsgi_application()",
                    f"--bind=unix:{self.socket}",
                    "--workers=2",
                    "--worker-class=gthread",
                    "--threads=2",
                    "--timeout=60",
                ],
                cwd=project.tmp,
                env=project.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def request(self, tenant: str, method: str = "GET") -> Outcome:
        connection = UnixHTTPConnection(self.socket)
        try:
            connection.request(method, "/orders/", headers={"Host": f"{tenant}.example.com"})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(tenant, method, None, error=repr(exc))
        finally:
            connection.close()
        if response.status != 200:
            return Outcome(tenant, method, response.status, error=body[:300].decode())
        return Outcome(tenant, method, 200, json.loads(body))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while not (os.path.exists(self.socket) and self.request(TENANTS[0]).right):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not serve:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def site(project: Project) -> Iterator[Site]:
    """gunicorn serving the project's tenants from the cluster; stopped afterwards."""
    running = Site(project)
    try:
        running.wait_ready()
        yield running
    finally:
        stop(running.process, timeout=15)


def load(site: Site, until: threading.Event, writes_to: str | None = None) -> list[Outcome]:
    """Four client threads sending requests to random tenants until ``until`` is set (at least
    25 each); every ``writes_to`` request a POST, which adds an order. Every outcome."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        chooser = random.Random(seed)
        sent = 0
        while sent < 25 or not until.is_set():
            tenant = chooser.choice(TENANTS)
            outcome = site.request(tenant, "POST" if tenant == writes_to else "GET")
            with lock:
                outcomes.append(outcome)
            sent += 1

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_requests_for_tenants_on_both_workers_get_their_own_rows_under_load(
    project: Project, site: Site
) -> None:
    done = threading.Event()
    done.set()

    outcomes = load(site, done)

    wrong = [outcome for outcome in outcomes if not outcome.right]
    assert wrong == []
    assert {outcome.tenant for outcome in outcomes} == set(TENANTS)
    assert len(set(project.placements().values())) == 2


def test_a_tenant_moved_to_the_other_worker_while_served_stays_correct(
    project: Project, site: Site
) -> None:
    before = project.placements()
    tenant = TENANTS[1]
    target = next(w.port for w in project.cluster.workers if w.port != before[tenant])
    moved = threading.Event()
    results: list[list[Outcome]] = []
    loader = threading.Thread(target=lambda: results.append(load(site, moved, tenant)))
    loader.start()

    try:
        project.python(
            f"from schemata.citus import move_to_node; move_to_node({tenant!r}, '127.0.0.1', "
            f"{target})"
        )
    finally:
        moved.set()
        loader.join()
    after_move = [site.request(name) for name in TENANTS]

    outcomes = results[0]
    writes = sum(1 for o in outcomes if o.method == "POST" and o.status == 200)
    rows = project.query(f"SELECT count(*) FROM {tenant}.citus_tenant_order")
    assert [outcome for outcome in outcomes + after_move if not outcome.right] == []
    assert project.placements() == {**before, tenant: target}
    assert writes > 0
    assert rows == [(1 + writes,)]


PLUGIN_TESTS = """
import pytest

import schemata
from tests.citus_shared.models import Plan
from tests.citus_tenant.models import Order


def test_the_schema_fixture_writes_to_the_first_tenant(schema):
    Order.objects.create(title="a", plan=Plan.objects.create(name="p"))

    assert schema.name == "t1"
    assert Order.objects.count() == 1


def test_and_its_writes_are_rolled_back(schema):
    assert Order.objects.count() == 0
    assert not Plan.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_commit():
    with schemata.override("t2"):
        Order.objects.create(title="b", plan=Plan.objects.create(name="q"))
        assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_and_are_flushed_after():
    with schemata.override("t2"):
        assert Order.objects.count() == 0
    assert not Plan.objects.exists()


def test_every_schema_runs_once_per_tenant(every_schema):
    assert Order.objects.count() == 0
"""


def test_the_pytest_plugin_runs_a_projects_tests_on_a_prepared_citus_database(
    citus_cluster: Cluster,  # noqa: F811
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    citus_cluster.create_database("plugin")
    citus_cluster.create_database("test_plugin")  # the test database, with Citus ready
    monkeypatch.setenv("DATABASE_URL", citus_cluster.url("plugin"))
    monkeypatch.setenv("CITUS_TENANTS", "t1,t2")
    pytester.makefile(".ini", pytest="[pytest]\nDJANGO_SETTINGS_MODULE = tests.citus_settings\n")
    pytester.makepyfile(test_project=PLUGIN_TESTS)
    try:
        result = pytester.runpytest_subprocess("--reuse-db", "-p", "no:cacheprovider")
        with citus_cluster.coordinator.connect("test_plugin") as connection:  # type: ignore[attr-defined]
            tables = connection.execute(
                "SELECT table_name::text, citus_table_type FROM citus_tables ORDER BY 1"
            ).fetchall()
    finally:
        citus_cluster.drop_database("test_plugin")
        citus_cluster.drop_database("plugin")

    result.assert_outcomes(passed=6)
    assert ("citus_shared_plan", "reference") in tables
    assert {f"{t}.citus_tenant_order" for t in ("t1", "t2")} <= {
        name for name, kind in tables if kind == "schema"
    }
