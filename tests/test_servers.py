"""Tenants on two PostgreSQL servers: 'default' and 'eu', each a throwaway server of its own.

The tests run in file order on one pair of servers: migrate, serve, refuse, then move.
Every command runs in a fresh process, as a user runs it (tests/servers_settings.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer, running

DATABASE = "site"


class Site:
    """The two servers, and how to run the project's commands and code against them."""

    def __init__(self, main: PostgresServer, eu: PostgresServer, tmp: Path) -> None:
        self.main, self.eu, self.tmp = main, eu, tmp

    def env(self, eu_schemas: str = "sb,sc") -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.servers_settings",
            "DATABASE_URL": self.main.url(DATABASE),
            "EU_DATABASE_URL": self.eu.url(DATABASE),
            "EU_SCHEMAS": eu_schemas,
        }

    def manage(
        self,
        *args: str,
        eu_schemas: str = "sb,sc",
        check: bool = True,
        path: str | None = None,
        answer: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m django ARGS``, with ``answer`` typed at its prompt."""
        env = self.env(eu_schemas)
        if path is not None:
            env["PATH"] = path
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            input=answer,
            capture_output=True,
            text=True,
            cwd=self.tmp,
            env=env,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def python(self, code: str, eu_schemas: str = "sb,sc") -> str:
        """What ``code`` prints, run after ``django.setup()`` in a fresh process."""
        result = subprocess.run(
            [sys.executable, "-c", f"import django\ndjango.setup()\n{code}"],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            env=self.env(eu_schemas),
        )
        if result.returncode != 0:
            pytest.fail(f"script failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def get(self, host: str, eu_schemas: str = "sb,sc") -> dict[str, object]:
        """GET / for ``host`` through Django's full handler: the status and the JSON body."""
        out = self.python(
            "import json\nfrom django.test import Client\n"
            f"r = Client(raise_request_exception=False).get('/', HTTP_HOST={host!r})\n"
            "body = json.loads(r.content) if r.status_code == 200 else None\n"
            "print(json.dumps({'status': r.status_code, 'body': body}))",
            eu_schemas,
        )
        return json.loads(out.splitlines()[-1])  # type: ignore[no-any-return]


def schemas_on(server: PostgresServer) -> set[str]:
    with server.connect(DATABASE) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname NOT IN ('public', 'information_schema')"
        ).fetchall()
    return {row[0] for row in rows}


def notes_on(server: PostgresServer, schema: str) -> list[str]:
    with server.connect(DATABASE) as connection:
        rows = connection.execute(f"SELECT title FROM {schema}.testapp_note ORDER BY title")
        return [row[0] for row in rows]


def table_exists(server: PostgresServer, name: str) -> bool:
    with server.connect(DATABASE) as connection:
        return bool(connection.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0])


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    # eu takes few connections, so that a test fills it cheaply.
    with (
        running() as main,
        running(max_connections=20) as eu,
        tempfile.TemporaryDirectory() as tmp,
    ):
        main.create_database(DATABASE)
        eu.create_database(DATABASE)
        yield Site(main, eu, Path(tmp))


PLUGIN_TESTS = """
import pytest
import schemata
from tests.testapp.models import Note


@pytest.mark.schema("sb")
def test_writes_on_a_schema_of_the_second_server(schema):
    Note.objects.create(title="x")
    assert Note.objects.count() == 1


@pytest.mark.schema("sb")
def test_are_rolled_back(schema):
    assert Note.objects.count() == 0


def test_any_schema_on_either_server_is_isolated(db):
    for name in ("sa", "sc"):
        with schemata.override(name):
            Note.objects.create(title=name)
            assert list(Note.objects.values_list("title", flat=True)) == [name]


def test_so_the_next_test_sees_none(db):
    for name in ("sa", "sc"):
        with schemata.override(name):
            assert Note.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_commit_on_both_servers():
    for name in ("sa", "sb"):
        with schemata.override(name):
            Note.objects.create(title=name)


@pytest.mark.django_db(transaction=True)
def test_and_are_flushed_after():
    for name in ("sa", "sb"):
        with schemata.override(name):
            assert Note.objects.count() == 0


def test_every_schema(every_schema):
    assert Note.objects.count() == 0


def test_a_transactional_fixture_gets_both_servers_transactional(request, transactional_db):
    marker = request.node.get_closest_marker("django_db")
    for name in ("sa", "sb"):
        with schemata.override(name):
            Note.objects.create(title=name)

    assert marker.kwargs == {"databases": ["default", "eu"], "transaction": True}


def test_and_every_write_of_both_is_gone(db):
    for name in ("sa", "sb"):
        with schemata.override(name):
            assert Note.objects.count() == 0


@pytest.mark.django_db(databases=["default"])
def test_a_test_marked_for_default_may_use_a_schema_of_the_second_server():
    with schemata.override("sb"):
        Note.objects.create(title="marked")
        assert Note.objects.count() == 1


@pytest.mark.django_db(databases="__all__")
def test_and_so_may_a_test_marked_for_all():
    with schemata.override("sb"):
        assert Note.objects.count() == 0
"""

PLUGIN_CASES = """
import schemata.testing
from tests.testapp.models import Note


class TestCases(schemata.testing.SchemataTestCase):
    schema = "sc"

    def test_a_test_case_writes_on_the_second_server(self):
        Note.objects.create(title="case")
        self.assertEqual(self.client.get("/").json(), {"schema": "sc", "notes": ["case"]})

    def test_and_its_writes_are_rolled_back(self):
        self.assertEqual(Note.objects.count(), 0)
"""

PLUGIN_MARKED = """
import pytest
import schemata
from tests.testapp.models import Note


@pytest.mark.django_db(databases=["default"])
def test_the_only_test_names_default_alone(request):
    with schemata.override("sb"):
        Note.objects.create(title="marked")
    assert request.node.get_closest_marker("django_db").kwargs["databases"] == ["default", "eu"]
"""


def test_the_pytest_plugin_isolates_schemas_on_both_servers(
    site: Site, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in site.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    pytester.makefile(".ini", pytest="[pytest]\nDJANGO_SETTINGS_MODULE = tests.servers_settings\n")
    pytester.makepyfile(test_two=PLUGIN_TESTS, test_cases=PLUGIN_CASES, test_marked=PLUGIN_MARKED)

    # Rows written in a test on either server are gone in the next; transactional tests
    # commit on both and are flushed after; every_schema runs the test once per schema; a
    # test that asks for transactional_db is made transactional on both servers.
    pytester.runpytest_subprocess("test_two.py", "-p", "no:cacheprovider").assert_outcomes(
        passed=13
    )
    # A TestCase asks for the test databases of both servers by itself.
    pytester.runpytest_subprocess("test_cases.py", "-p", "no:cacheprovider").assert_outcomes(
        passed=2
    )
    # A session whose only test names "default" alone still gets eu's test database.
    pytester.runpytest_subprocess("test_marked.py", "-p", "no:cacheprovider").assert_outcomes(
        passed=1
    )
    # All of it in the two test databases: neither server's own database was touched.
    assert schemas_on(site.main) == schemas_on(site.eu) == set()


@pytest.fixture(scope="module")
def migrated(site: Site) -> str:
    """The output of the first ``migrate_schemata --parallel 2``."""
    return site.manage("migrate_schemata", "--parallel", "2").stdout


def test_migrate_schemata_migrates_each_servers_public_then_its_schemas(
    site: Site, migrated: str
) -> None:
    assert "[public]   Applying contenttypes.0001_initial... OK" in migrated
    assert "[public@eu]   Applying contenttypes.0001_initial... OK" in migrated
    assert "Summary: 3 applied." in migrated
    assert schemas_on(site.main) == {"sa", "schemata_guard"}
    assert schemas_on(site.eu) == {"sb", "sc", "schemata_guard"}
    for server, schemas in ((site.main, ["sa"]), (site.eu, ["sb", "sc"])):
        assert table_exists(server, "public.django_content_type")
        assert not table_exists(server, "public.testapp_note")
        for name in schemas:
            assert table_exists(server, f"{name}.testapp_note")
            assert not table_exists(server, f"{name}.django_content_type")
    # The run-time tenants' registry lives on default only.
    assert table_exists(site.main, "public.schemata_tenant")
    assert not table_exists(site.eu, "public.schemata_tenant")


def test_a_rerun_finds_every_schema_on_both_servers_up_to_date(site: Site, migrated: str) -> None:
    output = site.manage("migrate_schemata", "--parallel", "2", "-v", "2").stdout

    assert "Summary: 3 up to date." in output
    assert "Applying" not in output


def test_each_request_is_served_from_its_tenants_server(site: Site, migrated: str) -> None:
    site.python(
        "import schemata\nfrom tests.testapp.models import Note\n"
        "for name in ('sa', 'sb', 'sc'):\n"
        "    with schemata.override(name):\n"
        "        Note.objects.create(title=f'{name}-note')\n"
    )

    for name in ("sa", "sb", "sc"):
        assert site.get(f"{name}.example.com") == {
            "status": 200,
            "body": {"schema": name, "notes": [f"{name}-note"]},
        }
    assert notes_on(site.main, "sa") == ["sa-note"]
    assert notes_on(site.eu, "sb") == ["sb-note"]
    assert notes_on(site.eu, "sc") == ["sc-note"]


def test_a_thread_moving_between_servers_writes_each_schema_on_its_own(
    site: Site, migrated: str
) -> None:
    # A thread reuses the wrapper of a schema it no longer uses for the next one: never one
    # of another server, whose pool (at its cap of 1) would move its connection there.
    site.python(
        "import schemata\nfrom django.db import connections\n"
        "from django.test import override_settings\n"
        "from tests.testapp.models import Note\n"
        "with override_settings(SCHEMATA_POOL={'max_size': 1}):\n"
        "    for name in ('sb', 'sa', 'sc', 'sa'):\n"
        "        with schemata.override(name):\n"
        "            Note.objects.create(title=f'{name}-spare')\n"
        "        connections.release_idle()\n"
    )

    assert [t for t in notes_on(site.main, "sa") if t.endswith("-spare")] == ["sa-spare"] * 2
    assert [t for t in notes_on(site.eu, "sb") if t.endswith("-spare")] == ["sb-spare"]
    assert [t for t in notes_on(site.eu, "sc") if t.endswith("-spare")] == ["sc-spare"]
    # The tests after this one count every note.
    site.python(
        "import schemata\nfrom tests.testapp.models import Note\n"
        "for name in ('sa', 'sb', 'sc'):\n"
        "    with schemata.override(name):\n"
        "        Note.objects.filter(title__endswith='-spare').delete()\n"
    )


def test_relations_between_servers_are_refused(site: Site, migrated: str) -> None:
    output = site.python(
        "import schemata\nfrom tests.testapp.models import Note, Tag\n"
        "with schemata.override('sa'):\n    on_default = Note.objects.create(title='x')\n"
        "with schemata.override('sc'):\n    on_eu = Note.objects.create(title='y')\n"
        "with schemata.override('sb'):\n"
        "    tag = Tag.objects.create(note=Note.objects.create(title='z'), label='t')\n"
        "    try:\n        tag.note = on_default\n"
        "    except ValueError as exc:\n        print('refused:', exc)\n"
        "    tag.note = on_eu\n    print('same server: allowed')\n"
        "    Note.objects.filter(title='z').delete()\n"
        "for name in ('sa', 'sc'):\n"
        "    with schemata.override(name):\n"
        "        Note.objects.filter(title__in=['x', 'y']).delete()\n"
    )

    assert "refused: Cannot assign" in output
    assert "the current database router prevents this relation" in output
    assert "same server: allowed" in output


def test_manage_schemata_lists_and_drops_per_server(site: Site, migrated: str) -> None:
    with site.eu.connect(DATABASE) as connection:
        connection.execute("CREATE SCHEMA stray")

    listing = site.manage("manage_schemata").stdout
    wrong_server = site.manage("manage_schemata", "--drop", "stray", "--noinput", check=False)
    dropped = site.manage("manage_schemata", "--drop", "stray", "--database", "eu", "--noinput")

    assert "sa: exists\n" in listing
    assert "sb: exists (database 'eu')" in listing
    assert "stray (database 'eu'): in the database, named by no domain (left alone)" in listing
    assert "There is no schema 'stray' to drop." in wrong_server.stderr
    assert "stray: dropped" in dropped.stdout
    assert "stray" not in schemas_on(site.eu)


def test_a_settings_schema_is_not_dropped_on_its_own_server(site: Site, migrated: str) -> None:
    result = site.manage("manage_schemata", "--drop", "sb", "--database", "eu", check=False)

    assert result.returncode == 1
    assert "Refusing to drop 'sb': SCHEMATA_DOMAINS still names it." in result.stderr
    assert "sb" in schemas_on(site.eu)


def test_move_app_and_clones_stay_within_one_server(site: Site, migrated: str) -> None:
    move_app = site.manage("move_app", "testapp", "--from", "sa", "--to", "sb", check=False)
    clone = site.manage(
        "tenants", "add", "sx", "sx.example.com", "--template", "sa", "--database", "eu",
        check=False,
    )  # fmt: skip

    assert "'sa' and 'sb' live on different servers ('default' and 'eu')" in move_app.stderr
    assert "a clone is made within one server" in clone.stderr
    assert "sx" not in schemas_on(site.eu) | schemas_on(site.main)


def test_manage_schemata_refuses_to_clone_a_template_of_another_server(
    site: Site, migrated: str
) -> None:
    # sc said to be on default (it is on eu): missing there, and its template sb is on eu.
    result = site.manage("manage_schemata", "--clone-from", "sb", eu_schemas="sb", check=False)

    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "CommandError: Cannot clone 'sb' into 'sc': 'sc' lives on 'default' and 'sb' on 'eu'; "
        "a clone is made within one server. Use a template on 'default'."
    )
    assert "sc" not in schemas_on(site.main)


def test_a_run_time_tenant_is_created_and_served_on_its_server(site: Site, migrated: str) -> None:
    added = site.manage("tenants", "add", "sr", "sr.example.com", "--database", "eu")
    site.python(
        "import schemata\nfrom tests.testapp.models import Note\n"
        "with schemata.override('sr'):\n    Note.objects.create(title='sr-note')\n"
    )
    listing = site.manage("tenants", "list").stdout

    assert "sr: created, served at sr.example.com" in added.stdout
    assert "sr" in schemas_on(site.eu)
    assert notes_on(site.eu, "sr") == ["sr-note"]
    assert "sr (database 'eu'): sr.example.com" in listing
    assert "sb (settings, database 'eu'): sb.example.com" in listing
    assert site.get("sr.example.com")["body"] == {"schema": "sr", "notes": ["sr-note"]}


def test_moving_refuses_what_it_cannot_do_and_changes_nothing(site: Site, migrated: str) -> None:
    unknown = site.manage("move_schema", "sb", "--to", "nowhere", "--noinput", check=False)
    with site.main.connect(DATABASE) as connection:
        connection.execute("CREATE SCHEMA sb")
    taken = site.manage("move_schema", "sb", "--to", "default", "--noinput", check=False)
    with site.main.connect(DATABASE) as connection:
        connection.execute("DROP SCHEMA sb")
    no_tools = site.manage(
        "move_schema", "sb", "--to", "default", "--noinput", check=False, path="/nonexistent"
    )

    assert "Cannot move 'sb' to 'nowhere': 'nowhere' is not an alias of DATABASES" in (
        unknown.stderr
    )
    assert "'default' has a schema 'sb' already" in taken.stderr
    assert "needs PostgreSQL's pg_dump and pg_restore on PATH" in no_tools.stderr
    assert notes_on(site.eu, "sb") == ["sb-note"]
    assert "sb" not in schemas_on(site.main)


def test_moving_refuses_unknown_or_absent_schemas_and_leftovers_of_an_earlier_move(
    site: Site, migrated: str
) -> None:
    unknown = site.manage("move_schema", "nope", "--to", "default", "--noinput", check=False)
    there = site.manage("move_schema", "sb", "--to", "eu", "--noinput", check=False)
    # Declared on 'eu', but its schema is on 'default'.
    absent = site.manage(
        "move_schema", "sa", "--to", "default", "--noinput", eu_schemas="sa,sb,sc", check=False
    )
    with site.eu.connect(DATABASE) as connection:
        connection.execute("CREATE SCHEMA sb_moved")
    try:
        leftover = site.manage("move_schema", "sb", "--to", "default", "--noinput", check=False)
    finally:
        with site.eu.connect(DATABASE) as connection:
            connection.execute("DROP SCHEMA sb_moved")

    assert "Unknown schema 'nope': it is in neither SCHEMATA_DOMAINS nor the run-time " in (
        unknown.stderr
    )
    assert "CommandError: 'sb' is on 'eu' already." in there.stderr
    assert "There is no schema 'sa' on its server to move." in absent.stderr
    assert (
        "'sb_moved', the copy an earlier move left, is still there: drop it first "
        "('manage.py manage_schemata --drop sb_moved')." in leftover.stderr
    )
    assert notes_on(site.eu, "sb") == ["sb-note"]
    assert "sb" not in schemas_on(site.main)


def test_moving_asks_for_confirmation_and_a_no_changes_nothing(site: Site, migrated: str) -> None:
    result = site.manage("move_schema", "sb", "--to", "default", answer="no\n", check=False)

    assert result.returncode == 1
    assert "This copies 'sb' to 'default'" in result.stdout
    assert "CommandError: Move cancelled: nothing was changed." in result.stderr
    assert "sb" not in schemas_on(site.main)


def test_a_dump_that_fails_on_the_source_changes_nothing(site: Site, migrated: str) -> None:
    # Every connection eu takes but one: the command's own; pg_dump's is refused.
    with site.eu.connect(DATABASE) as first:
        limit = int(first.execute("SHOW max_connections").fetchone()[0])
        used = first.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()[0]
        others = [site.eu.connect(DATABASE) for _ in range(limit - used - 1)]
        try:
            result = site.manage("move_schema", "sb", "--to", "default", "--noinput", check=False)
        finally:
            for connection in others:
                connection.close()

    assert result.returncode == 1
    assert "CommandError: pg_dump of 'sb' on 'eu' failed: " in result.stderr
    assert "too many clients already" in result.stderr
    assert "sb" not in schemas_on(site.main)
    assert {"sb", "sb_moved"} & schemas_on(site.eu) == {"sb"}
    assert notes_on(site.eu, "sb") == ["sb-note"]


#: On the target: a row appears in sb.testapp_note as the restore creates it, or the restore
#: fails; either way the copy is not the source's.
TAMPER = """
CREATE FUNCTION public.tamper() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE TABLE' AND object_identity = 'sb.testapp_note' LOOP
        IF current_setting('schemata.tamper', true) = 'fail' THEN
            RAISE EXCEPTION 'no tables here';
        END IF;
        INSERT INTO sb.testapp_note (id, title) VALUES (-1, 'stray');
    END LOOP;
END $$;
CREATE EVENT TRIGGER tamper ON ddl_command_end EXECUTE FUNCTION public.tamper();
"""


def test_a_copy_that_differs_or_fails_on_the_target_is_dropped_there(
    site: Site, migrated: str
) -> None:
    with site.main.connect(DATABASE) as connection:
        connection.execute(TAMPER)
    try:
        differs = site.manage("move_schema", "sb", "--to", "default", "--noinput", check=False)
        with site.main.connect(DATABASE) as connection:
            connection.execute(f"ALTER DATABASE {DATABASE} SET schemata.tamper = 'fail'")
        fails = site.manage("move_schema", "sb", "--to", "default", "--noinput", check=False)
    finally:
        with site.main.connect(DATABASE) as connection:
            connection.execute(f"ALTER DATABASE {DATABASE} RESET schemata.tamper")
            connection.execute("DROP EVENT TRIGGER tamper")
            connection.execute("DROP FUNCTION public.tamper()")

    assert (
        "The copy of 'sb' on 'default' does not match the source (testapp_note): nothing was "
        "changed on 'eu'." in differs.stderr
    )
    assert "Restoring 'sb' on 'default' failed, and was rolled back there: " in fails.stderr
    assert "no tables here" in fails.stderr
    assert "sb" not in schemas_on(site.main)
    assert {"sb", "sb_moved"} & schemas_on(site.eu) == {"sb"}
    assert notes_on(site.eu, "sb") == ["sb-note"]


def test_a_tenant_without_tables_moves_with_no_rows_once_confirmed(
    site: Site, migrated: str
) -> None:
    site.manage("tenants", "add", "se", "se.example.com", "--database", "eu")
    with site.eu.connect(DATABASE) as connection:
        connection.execute("DROP SCHEMA se CASCADE")
        connection.execute("CREATE SCHEMA se")

    moved = site.manage("move_schema", "se", "--to", "default", answer="yes\n", check=False)

    assert moved.returncode == 0, moved.stderr
    assert (
        "se: copied from 'eu' to 'default' (0 rows); the old copy is 'se_moved' on 'eu'."
        in moved.stdout
    )
    assert "se" in schemas_on(site.main)
    assert "se_moved" in schemas_on(site.eu)
    site.manage("tenants", "remove", "se", "--noinput")
    site.manage("manage_schemata", "--drop", "se_moved", "--database", "eu", "--noinput")


def test_a_run_time_tenant_moves_to_another_server_and_is_served_there(
    site: Site, migrated: str
) -> None:
    moved = site.manage("move_schema", "sr", "--to", "default", "--noinput")

    assert re.search(
        r"sr: copied from 'eu' to 'default' \(\d+ rows\); the old copy is 'sr_moved' on 'eu'",
        moved.stdout,
    )
    assert "sr: served from 'default'" in moved.stdout
    assert notes_on(site.main, "sr") == ["sr-note"]
    assert "sr" not in schemas_on(site.eu) and "sr_moved" in schemas_on(site.eu)
    assert site.get("sr.example.com")["body"] == {"schema": "sr", "notes": ["sr-note"]}
    # Its migrations came along: nothing to apply.
    rerun = site.manage("migrate_schemata", "--schema", "sr", "-v", "2").stdout
    assert "Applying" not in rerun and "Summary: 1 up to date." in rerun


def test_a_settings_tenant_moves_and_fails_loudly_until_its_settings_follow(
    site: Site, migrated: str
) -> None:
    moved = site.manage("move_schema", "sc", "--to", "default", "--noinput")
    before = site.get("sc.example.com", eu_schemas="sb,sc")
    after = site.get("sc.example.com", eu_schemas="sb")
    rerun = site.manage("migrate_schemata", "-v", "2", eu_schemas="sb").stdout

    assert "Next: set 'database': 'default' in the SCHEMATA_DOMAINS entries of 'sc'" in (
        moved.stdout
    )
    assert "manage_schemata --drop sc_moved --database eu" in moved.stdout
    assert before["status"] == 500  # the old server has no 'sc' now: never an empty answer
    assert after == {"status": 200, "body": {"schema": "sc", "notes": ["sc-note"]}}
    assert notes_on(site.main, "sc") == ["sc-note"]
    assert "Applying" not in rerun


def test_a_move_killed_mid_copy_leaves_both_servers_as_they_were_and_a_rerun_finishes(
    site: Site, migrated: str
) -> None:
    with site.eu.connect(DATABASE) as connection:
        connection.execute(
            "INSERT INTO sb.testapp_note (title) SELECT 'bulk' FROM generate_series(1, 400000)"
        )
    move = subprocess.Popen(
        [sys.executable, "-m", "django", "move_schema", "sb", "--to", "default", "--noinput"],
        cwd=site.tmp,
        env=site.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with site.main.connect(DATABASE) as connection:
            deadline = time.monotonic() + 30
            while not connection.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_restore' "
                "AND state = 'active'"
            ).fetchone():
                assert move.poll() is None and time.monotonic() < deadline, "no restore seen"
                time.sleep(0.01)
        move.kill()
    finally:
        move.wait()
    with site.main.connect(DATABASE) as connection:
        deadline = time.monotonic() + 30
        while connection.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_restore'"
        ).fetchone():
            assert time.monotonic() < deadline, "pg_restore outlived the killed command"
            time.sleep(0.05)

    assert "sb" not in schemas_on(site.main)  # the restore was rolled back with its process
    assert {"sb", "sb_moved"} & schemas_on(site.eu) == {"sb"}
    assert len(notes_on(site.eu, "sb")) == 400001

    rerun = site.manage("move_schema", "sb", "--to", "default", "--noinput")

    assert "sb: copied from 'eu' to 'default'" in rerun.stdout
    assert len(notes_on(site.main, "sb")) == 400001
