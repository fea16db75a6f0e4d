"""Tenants registered at run time: the API, the registry, the middleware and the command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import ProgrammingError, connections, transaction
from django.db.backends.signals import connection_created
from django.http import Http404
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

import schemata
from schemata.checks import check_runtime_tenants
from schemata.conf import conf
from schemata.middleware import schema_for_request
from schemata.models import Domain, Tenant
from schemata.registry import BUMP_SQL, all_schemas, registry
from schemata.routers import SchemataRouter
from tests.testapp.models import Note

RUNTIME = {"SCHEMATA_RUNTIME_TENANTS": True, "SCHEMATA_TENANT_REFRESH": 60}


def schema_exists(name: str) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT to_regnamespace(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def drop_runtime_schemas() -> None:
    connections.close_all()
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rt\\_%%'")
        for (name,) in cursor.fetchall():
            cursor.execute(f"DROP SCHEMA {name} CASCADE")
        cursor.execute("DELETE FROM schemata_domain")
        cursor.execute("DELETE FROM schemata_tenant")


@pytest.fixture
def runtime(transactional_db: None) -> Iterator[None]:
    """Run-time tenants on, with a long refresh period; the test's tenants (schemas named
    rt_*) are dropped afterwards."""
    with override_settings(**RUNTIME):
        registry.clear()
        try:
            yield
        finally:
            drop_runtime_schemas()
            registry.clear()


def database_url() -> str:
    """DATABASE_URL, pointing at the test database."""
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    name = connections["default"].settings_dict["NAME"]
    return urllib.parse.urlunsplit(url._replace(path=f"{url.path.rsplit('/', 1)[0]}/{name}"))


def manage_elsewhere(*args: str) -> str:
    """Run a management command in another process, on the test database."""
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.tenant_settings",
            "DATABASE_URL": database_url(),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def host(name: str) -> str:
    return f"{name.replace('_', '-')}.example.com"


def lookup(hostname: str) -> str | None:
    request = RequestFactory().get("/", HTTP_HOST=hostname)
    try:
        return schema_for_request(request).name
    except Http404:
        return None


# --- create_tenant ------------------------------------------------------------------------


def test_a_created_tenant_is_served_at_its_domain_with_its_config(runtime: None) -> None:
    schemata.create_tenant("rt-one.example.com", "rt_one", template="alpha", plan="trial")

    response = Client(HTTP_HOST="rt-one.example.com").get("/")

    assert response.status_code == 200
    assert response.json()["schema"] == "rt_one"
    assert response.json()["config"] == {"plan": "trial"}


def test_create_tenant_returns_its_schema(runtime: None) -> None:
    schema = schemata.create_tenant(
        ["RT-One.example.com.", "www.rt-one.example.com"], "rt_one", template="alpha", n=1
    )

    assert schema == schemata.get_schema("rt_one")
    assert (schema.name, schema.alias, schema.base) == ("rt_one", "rt_one", "default")
    assert schema.domains == ("rt-one.example.com", "www.rt-one.example.com")
    assert dict(schema.config) == {"n": 1}


def test_a_tenant_cloned_from_a_template_has_its_own_tables(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with schemata.override("rt_one"):
        Note.objects.create(title="mine")
    with schemata.override("alpha"):
        in_alpha = Note.objects.filter(title="mine").exists()
    with schemata.override("rt_one"):
        Note.objects.all().delete()

    assert not in_alpha


def test_a_tenant_without_a_template_is_migrated(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one")

    with schemata.override("rt_one"):
        assert Note.objects.count() == 0
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM rt_one.django_migrations")
        assert cursor.fetchone()[0] > 10


def test_a_missing_template_leaves_no_schema_and_no_tenant(runtime: None) -> None:
    with pytest.raises(schemata.SchemataError, match="'nope' is not a migrated schema"):
        schemata.create_tenant(host("rt_one"), "rt_one", template="nope")

    assert not schema_exists("rt_one")
    assert not Tenant.objects.exists()
    assert not Domain.objects.exists()
    assert lookup(host("rt_one")) is None


def test_a_failing_migration_leaves_no_schema_and_no_tenant(runtime: None) -> None:
    with (
        override_settings(MIGRATION_MODULES={"seedapp": "tests.failing_migrations"}),
        pytest.raises(schemata.SchemataError, match="this migration fails on purpose"),
    ):
        schemata.create_tenant(host("rt_one"), "rt_one")

    assert not schema_exists("rt_one")
    assert not Tenant.objects.exists()
    assert lookup(host("rt_one")) is None


def test_a_failure_after_the_schema_is_made_drops_it(runtime: None) -> None:
    # The domain is taken between the checks and the registration.
    def take_the_domain(*args: object, **kwargs: object) -> None:
        other = Tenant.objects.get_or_create(schema_name="rt_other")[0]
        Domain.objects.get_or_create(domain=host("rt_one"), tenant=other)

    from django.db.models.signals import post_migrate

    post_migrate.connect(take_the_domain, dispatch_uid="take_the_domain")
    try:
        with pytest.raises(schemata.SchemataError, match="Another process registered"):
            schemata.create_tenant(host("rt_one"), "rt_one")
    finally:
        post_migrate.disconnect(dispatch_uid="take_the_domain")

    assert not schema_exists("rt_one")
    assert not Tenant.objects.filter(schema_name="rt_one").exists()


@pytest.mark.parametrize(
    ("domain", "name", "error"),
    [
        ("alpha.example.com", "rt_one", "'alpha.example.com' is listed in SCHEMATA_DOMAINS"),
        ("rt.example.com", "alpha", "SCHEMATA_DOMAINS already has the schema 'alpha'"),
        ("rt.example.com", "default", "'default' is a database alias in DATABASES"),
        ("rt.example.com", "public", "schema name 'public' is reserved"),
        ("rt.example.com", "Rt-One", "schema name 'Rt-One' is invalid"),
        ("rt.example.com", 5, "A schema name must be a string, not int"),
        ("rt one.example.com", "rt_one", "a domain is a host name"),
        ("bücher.example.com", "rt_one", "'xn--bcher-kva.example.com' (its IDNA form)"),
        ("", "rt_one", "A domain must be a non-empty string"),
        ([], "rt_one", "A tenant needs at least one domain"),
        (["a.example.com", "A.example.com"], "rt_one", "is given twice"),
    ],
)
def test_create_tenant_refuses_what_settings_would_refuse(
    runtime: None, domain: str, name: Any, error: str
) -> None:
    with pytest.raises(schemata.SchemataError, match=re.escape(error)):
        schemata.create_tenant(domain, name, template="alpha")

    assert not Tenant.objects.exists()


def test_create_tenant_refuses_a_taken_name_or_domain(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with pytest.raises(schemata.SchemataError, match="A tenant called 'rt_one' exists"):
        schemata.create_tenant("rt-new.example.com", "rt_one", template="alpha")
    with pytest.raises(schemata.SchemataError, match="serves the tenant 'rt_one' already"):
        schemata.create_tenant(host("rt_one"), "rt_two", template="alpha")


def test_create_tenant_refuses_a_schema_that_exists(runtime: None) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE SCHEMA rt_one")

    with pytest.raises(schemata.SchemataError, match="The schema 'rt_one' exists already"):
        schemata.create_tenant(host("rt_one"), "rt_one")


def test_create_tenant_refuses_a_config_that_is_not_json(runtime: None) -> None:
    with pytest.raises(schemata.SchemataError, match="The config of 'rt_one' must be JSON"):
        schemata.create_tenant(host("rt_one"), "rt_one", template="alpha", when=object())

    assert not schema_exists("rt_one")


@pytest.mark.django_db
def test_run_time_tenants_are_off_unless_enabled() -> None:
    with pytest.raises(schemata.SchemataError, match="SCHEMATA_RUNTIME_TENANTS = True"):
        schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    assert all_schemas() == dict(conf.databases.schemas)


# --- delete, domains -----------------------------------------------------------------------


def test_delete_tenant_stops_serving_it_and_drops_its_schema(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    with schemata.override("rt_one"):
        Note.objects.create(title="kept open")  # leaves a pooled connection on the schema

    schemata.delete_tenant("rt_one")

    assert lookup(host("rt_one")) is None
    assert not schema_exists("rt_one")
    with pytest.raises(schemata.UnknownSchema):
        schemata.get_schema("rt_one")


def test_delete_tenant_refuses_unknown_and_settings_tenants(runtime: None) -> None:
    with pytest.raises(schemata.UnknownSchema, match="No tenant registered at run time"):
        schemata.delete_tenant("rt_nope")
    with pytest.raises(schemata.SchemataError, match="'alpha' is declared in SCHEMATA_DOMAINS"):
        schemata.delete_tenant("alpha")

    assert schema_exists("alpha")


def test_an_added_domain_serves_the_tenant(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    schema = schemata.add_domain("rt_one", "Shop.Example.com")

    assert schema.domains == (host("rt_one"), "shop.example.com")
    assert lookup("shop.example.com") == "rt_one"


def test_add_domain_refuses_taken_hosts_and_unknown_tenants(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with pytest.raises(schemata.SchemataError, match="'rt-one.example.com' serves another"):
        schemata.add_domain("rt_one", host("rt_one"))
    with pytest.raises(schemata.SchemataError, match="listed in SCHEMATA_DOMAINS already"):
        schemata.add_domain("rt_one", "beta.example.com")
    with pytest.raises(schemata.UnknownSchema):
        schemata.add_domain("rt_nope", "x.example.com")
    with pytest.raises(schemata.SchemataError, match="'alpha' is declared in SCHEMATA_DOMAINS"):
        schemata.add_domain("alpha", "x.example.com")


def test_a_removed_domain_is_no_longer_served(runtime: None) -> None:
    schemata.create_tenant([host("rt_one"), "old.example.com"], "rt_one", template="alpha")

    schema = schemata.remove_domain("old.example.com")

    assert schema.domains == (host("rt_one"),)
    assert lookup("old.example.com") is None


def test_remove_domain_refuses_a_last_settings_or_unknown_domain(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with pytest.raises(schemata.SchemataError, match="is the last domain of 'rt_one'"):
        schemata.remove_domain(host("rt_one"))
    with pytest.raises(schemata.SchemataError, match="listed in SCHEMATA_DOMAINS: remove it"):
        schemata.remove_domain("alpha.example.com")
    with pytest.raises(schemata.SchemataError, match="No run-time tenant is served at"):
        schemata.remove_domain("nope.example.com")


# --- the registry: what lookups cost ---------------------------------------------------------


def test_a_settings_host_costs_no_query_with_run_time_tenants_on(runtime: None) -> None:
    with CaptureQueriesContext(connections["default"]) as queries:
        for _ in range(3):
            assert lookup("alpha.example.com") == "alpha"

    assert len(queries) == 0


def test_a_run_time_host_costs_no_query_within_the_refresh_period(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    lookup(host("rt_one"))

    with CaptureQueriesContext(connections["default"]) as queries:
        for _ in range(100):
            assert lookup(host("rt_one")) == "rt_one"

    assert len(queries) == 0


def test_a_flood_of_unknown_hosts_costs_a_bounded_number_of_queries(runtime: None) -> None:
    lookup("warm-up.example.com")
    checks = registry.stats.checks
    started = time.monotonic()

    with (
        override_settings(SCHEMATA_TENANT_MISS_RATE=20),
        CaptureQueriesContext(connections["default"]) as queries,
    ):
        for i in range(10_000):
            assert lookup(f"unknown-{i}.example.com") is None
    elapsed = time.monotonic() - started

    # At most 20 revision reads a second, and nothing changed: no load.
    assert len(queries) == registry.stats.checks - checks
    assert len(queries) <= 1 + 20 * elapsed
    assert len(queries) < 100
    assert all("schemata_revision" in query["sql"] for query in queries.captured_queries)


def test_an_unknown_host_is_looked_up_again_only_after_the_miss_interval(runtime: None) -> None:
    with override_settings(SCHEMATA_TENANT_MISS_RATE=5):
        lookup("unknown.example.com")  # loads
        with CaptureQueriesContext(connections["default"]) as queries:
            lookup("unknown.example.com")
            time.sleep(0.21)
            lookup("unknown.example.com")

    assert len(queries) == 1


def test_a_tenant_made_by_another_process_is_served_on_its_first_request(
    runtime: None,
) -> None:
    assert lookup(host("rt_one")) is None  # loaded, and rt_one unknown

    manage_elsewhere("tenants", "add", "rt_one", host("rt_one"), "--template", "alpha")
    time.sleep(1 / 10)  # the default miss rate

    assert lookup(host("rt_one")) == "rt_one"
    assert schemata.get_schema("rt_one").domains == (host("rt_one"),)


def test_a_tenant_removed_elsewhere_stops_within_the_refresh_period(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    with override_settings(SCHEMATA_TENANT_REFRESH=0.3):
        assert lookup(host("rt_one")) == "rt_one"

        # What another process's delete_tenant() commits.
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute("DELETE FROM schemata_domain")
            cursor.execute(BUMP_SQL)
        served_from_memory = lookup(host("rt_one"))
        time.sleep(0.3)

        assert lookup(host("rt_one")) is None
    assert served_from_memory == "rt_one"


def test_with_run_time_tenants_off_a_miss_costs_no_query(db: None) -> None:
    with CaptureQueriesContext(connections["default"]) as queries:
        assert lookup("unknown.example.com") is None
        with pytest.raises(schemata.UnknownSchema):
            schemata.get_schema("unknown")

    assert len(queries) == 0


def test_a_tenant_registered_elsewhere_is_found_by_name_on_first_use(runtime: None) -> None:
    assert lookup("warm-up.example.com") is None
    time.sleep(1 / 10)  # the default miss rate

    _insert("rt_one", host("rt_one"))  # as another process's create_tenant() commits it

    assert schemata.get_schema("rt_one").domains == (host("rt_one"),)


def test_a_known_host_is_served_from_memory_while_another_thread_checks(runtime: None) -> None:
    _insert("rt_one", host("rt_one"))
    with override_settings(SCHEMATA_TENANT_REFRESH=0):
        assert lookup(host("rt_one")) == "rt_one"

        with registry._lock, CaptureQueriesContext(connections["default"]) as queries:
            assert lookup(host("rt_one")) == "rt_one"

    assert len(queries) == 0


def test_a_lookup_while_the_tenants_are_read_answers_from_memory(runtime: None) -> None:
    _insert("rt_one", host("rt_one"))
    seen: list[object] = []

    def look_up(sender: object, connection: object, **kwargs: object) -> None:
        seen.append(registry.schema_named("rt_one"))
        seen.append(registry.schema_for_host(host("rt_one")))
        registry.sync()

    connections["default"].close()
    connection_created.connect(look_up, dispatch_uid="look_up")
    try:
        assert lookup(host("rt_one")) == "rt_one"
    finally:
        connection_created.disconnect(dispatch_uid="look_up")

    assert seen == [None, None]


def test_a_broken_registry_table_raises(db: None) -> None:
    with override_settings(**RUNTIME):
        registry.clear()
        with connections["default"].cursor() as cursor:
            cursor.execute("ALTER TABLE schemata_revision RENAME COLUMN number TO n")
        try:
            with pytest.raises(ProgrammingError, match='column "number" does not exist'):
                lookup("rt-one.example.com")
        finally:
            registry.clear()


def test_changing_the_domains_setting_loads_the_tenants_again(runtime: None) -> None:
    lookup("warm-up.example.com")
    loads = registry.stats.loads

    with override_settings(SCHEMATA_DOMAINS={}):
        lookup("warm-up.example.com")

    assert registry.stats.loads == loads + 1


def test_an_unknown_name_is_a_key_error(runtime: None) -> None:
    with pytest.raises(KeyError):
        conf.databases.schemas["rt_nope"]


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        ("SCHEMATA_TENANT_REFRESH", -1, "SCHEMATA_TENANT_REFRESH must be at least 0"),
        ("SCHEMATA_TENANT_MISS_RATE", 0, "SCHEMATA_TENANT_MISS_RATE must be more than 0"),
    ],
)
def test_tenant_settings_are_validated(setting: str, value: int, error: str) -> None:
    with override_settings(**{setting: value}), pytest.raises(ImproperlyConfigured, match=error):
        getattr(conf, setting.removeprefix("SCHEMATA_"))


def test_the_registry_reads_nothing_without_its_tables(db: None) -> None:
    with override_settings(**RUNTIME):
        registry.clear()
        with connections["default"].cursor() as cursor:
            cursor.execute("ALTER TABLE schemata_revision RENAME TO schemata_revision_away")
        try:
            assert lookup("rt-one.example.com") is None
            # The test's transaction is still usable: the lookup ran in a savepoint.
            assert Note.objects.using("default").count() >= 0
        finally:
            with connections["default"].cursor() as cursor:
                cursor.execute("ALTER TABLE schemata_revision_away RENAME TO schemata_revision")
            registry.clear()


def test_the_registry_loads_again_for_another_database(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    lookup(host("rt_one"))
    settings_dict = dict.__getitem__(connections.settings, "default")
    name, loads = settings_dict["NAME"], registry.stats.loads

    settings_dict["NAME"] = "renamed"  # as the test runner does; the connection stays open
    try:
        lookup(host("rt_one"))
    finally:
        settings_dict["NAME"] = name

    assert registry.stats.loads == loads + 1


def test_all_schemas_lists_the_settings_then_the_run_time_tenants(runtime: None) -> None:
    schemata.create_tenant(host("rt_b"), "rt_b", template="alpha")
    schemata.create_tenant(host("rt_a"), "rt_a", template="alpha")

    names = list(all_schemas())

    assert names == [*conf.databases.schemas, "rt_a", "rt_b"]


def test_the_registry_tables_are_migrated_in_the_base_database_only() -> None:
    router = SchemataRouter()

    assert router.allow_migrate("default", "schemata") is True
    assert router.allow_migrate("alpha", "schemata") is False


def test_registry_models_are_read_from_the_base_database_in_any_schema(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with schemata.override("beta"):
        names = list(Tenant.objects.values_list("schema_name", flat=True))

    assert names == ["rt_one"]


# --- checks ----------------------------------------------------------------------------------


def _insert(name: str, *domains: str) -> None:
    with transaction.atomic():
        tenant = Tenant.objects.create(schema_name=name)
        for domain in domains:
            Domain.objects.create(domain=domain, tenant=tenant)
        with connections["default"].cursor() as cursor:
            cursor.execute(BUMP_SQL)


def test_a_tenant_that_clashes_with_the_settings_is_an_error_and_not_served(
    runtime: None,
) -> None:
    _insert("alpha", "other-alpha.example.com")
    _insert("rt_one", "beta.example.com", "rt-one.example.com")

    errors = check_runtime_tenants(databases=["default"])

    assert [(e.id, e.msg) for e in errors] == [
        ("schemata.E015", "The run-time tenant 'alpha' has a name SCHEMATA_DOMAINS uses."),
        (
            "schemata.E015",
            "The domain 'beta.example.com' of the run-time tenant 'rt_one' is listed in "
            "SCHEMATA_DOMAINS.",
        ),
    ]
    assert lookup("other-alpha.example.com") is None
    assert lookup("beta.example.com") == "beta"
    assert schemata.get_schema("rt_one").domains == ("rt-one.example.com",)


def test_entries_written_past_the_validation_are_errors_and_not_served(runtime: None) -> None:
    _insert("default", "d.example.com")
    _insert("Bad", "bad.example.com")
    _insert("rt_one", "Upper.example.com", "bad host.example.com")

    errors = check_runtime_tenants(databases=["default"])

    assert [(e.id, e.msg.split(":")[0]) for e in errors] == [
        ("schemata.E016", "The run-time tenant 'Bad'"),
        ("schemata.E015", "The run-time tenant 'default' has a name DATABASES uses."),
        ("schemata.E016", "The domain 'Upper.example.com' of the run-time tenant 'rt_one'"),
        ("schemata.E016", "The domain 'bad host.example.com' of the run-time tenant 'rt_one'"),
    ]
    assert lookup("bad.example.com") is None
    assert schemata.get_schema("rt_one").domains == ()


def test_the_check_needs_the_database_and_the_setting(runtime: None) -> None:
    assert check_runtime_tenants(databases=["default"]) == []
    _insert("rt_one")  # no domain: nothing to report
    assert check_runtime_tenants(databases=["default"]) == []
    _insert("alpha", "other-alpha.example.com")

    assert check_runtime_tenants(databases=None) == []
    with override_settings(SCHEMATA_RUNTIME_TENANTS=False):
        assert check_runtime_tenants(databases=["default"]) == []


# --- the command -----------------------------------------------------------------------------


def tenants(*args: str) -> str:
    out = StringIO()
    call_command("tenants", *args, stdout=out)
    return out.getvalue()


def test_the_command_adds_lists_and_removes_tenants_and_domains(runtime: None) -> None:
    added = tenants("add", "rt_one", host("rt_one"), "--template", "alpha", "--set", "plan=pro")
    more = tenants("add-domain", "rt_one", "shop.example.com")
    fewer = tenants("remove-domain", "shop.example.com")
    listing = tenants("list")
    removed = tenants("remove", "rt_one", "--noinput")

    assert added == "rt_one: created, served at rt-one.example.com\n"
    assert more == "rt_one: served at rt-one.example.com, shop.example.com\n"
    assert fewer == "rt_one: served at rt-one.example.com\n"
    assert listing.splitlines()[0] == "alpha (settings): alpha.example.com, www.alpha.example.com"
    assert listing.splitlines()[-1] == "rt_one: rt-one.example.com"
    assert removed == "rt_one: removed, schema dropped\n"
    assert not schema_exists("rt_one")


def test_the_command_reads_config_values_as_json_or_text(runtime: None) -> None:
    tenants(
        "add", "rt_one", host("rt_one"), "--template", "alpha", "--set", "seats=5", "--set", "n=x"
    )

    assert dict(schemata.get_schema("rt_one").config) == {"seats": 5, "n": "x"}


def test_the_command_reports_errors(runtime: None) -> None:
    with pytest.raises(CommandError, match="SCHEMATA_DOMAINS already has the schema 'alpha'"):
        tenants("add", "alpha", "a2.example.com")
    with pytest.raises(CommandError, match="--set takes KEY=VALUE"):
        tenants("add", "rt_one", host("rt_one"), "--set", "plan")


def test_the_command_asks_before_removing(runtime: None, monkeypatch: pytest.MonkeyPatch) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    monkeypatch.setattr("builtins.input", lambda prompt: "no")

    with pytest.raises(CommandError, match="Removal cancelled"):
        tenants("remove", "rt_one")

    assert schema_exists("rt_one")


def test_the_command_removes_after_a_yes(runtime: None, monkeypatch: pytest.MonkeyPatch) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")

    tenants("remove", "rt_one")

    assert not schema_exists("rt_one")


# --- unknown databases -----------------------------------------------------------------------


def test_a_tenant_on_an_unknown_database_is_refused(runtime: None) -> None:
    with pytest.raises(schemata.SchemataError) as excinfo:
        schemata.create_tenant(host("rt_one"), "rt_one", database="gone")

    assert str(excinfo.value) == (
        "database='gone': 'gone' is not an alias of DATABASES (which has 'default')."
    )
    assert not Tenant.objects.exists()


def test_a_tenant_row_on_an_unknown_database_is_an_error(runtime: None) -> None:
    with transaction.atomic():
        Tenant.objects.create(schema_name="rt_one", database="gone")
        with connections["default"].cursor() as cursor:
            cursor.execute(BUMP_SQL)

    errors = check_runtime_tenants(databases=["default"])

    assert [(e.id, e.msg) for e in errors] == [
        (
            "schemata.E016",
            "The run-time tenant 'rt_one''s database: 'gone' is not an alias of DATABASES "
            "(which has 'default').",
        )
    ]


def test_manage_schemata_refuses_to_drop_a_run_time_tenant(runtime: None) -> None:
    schemata.create_tenant(host("rt_one"), "rt_one", template="alpha")

    with pytest.raises(CommandError) as excinfo:
        call_command("manage_schemata", "--drop", "rt_one", "--noinput")

    assert str(excinfo.value) == (
        "Refusing to drop 'rt_one': it is a tenant registered at run time. Remove it with "
        "'manage.py tenants remove rt_one'."
    )
    assert schema_exists("rt_one")


def test_manage_schemata_drop_on_an_unknown_database_is_refused(runtime: None) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command("manage_schemata", "--drop", "stray", "--database", "gone", "--noinput")

    assert str(excinfo.value) == (
        "--database: 'gone' is not an alias of DATABASES (which has 'default')."
    )
