from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from schemata import Schema, expand_databases
from schemata.databases import DERIVED_CACHE_SIZE, SchemataDatabases, normalize_host

BASE: dict[str, Any] = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "app",
    "OPTIONS": {"options": "-c statement_timeout=5s", "sslmode": {"prefer": 1}},
    "TEST": {"NAME": "test_app"},
}


def expand(domains: dict[str, Any], **databases: Any) -> SchemataDatabases:
    return expand_databases({"default": copy.deepcopy(BASE), **databases}, domains)


def test_each_schema_gets_an_alias_on_its_search_path_keeping_user_options() -> None:
    databases = expand({"a.example.com": {"schema_name": "alpha"}})

    assert databases.search_path("alpha") == "alpha"
    assert databases["alpha"]["OPTIONS"]["options"] == "-c statement_timeout=5s"
    assert databases["alpha"]["NAME"] == "app"
    assert databases["default"]["OPTIONS"]["options"] == "-c statement_timeout=5s"


def test_the_search_path_is_not_a_startup_option() -> None:
    databases = expand_databases(
        {"default": {"ENGINE": "django.db.backends.postgresql"}},
        {"a.example.com": {"schema_name": "alpha"}},
    )

    # Set by a statement when a connection is opened: PgBouncer before 1.20 refuses options.
    assert databases["alpha"]["OPTIONS"] == {"application_name": "schemata:alpha"}


def test_schema_settings_share_no_nested_object_with_the_base_or_each_other() -> None:
    databases = expand(
        {"a.example.com": {"schema_name": "alpha"}, "b.example.com": {"schema_name": "beta"}}
    )

    alpha, beta, base = databases["alpha"], databases["beta"], databases["default"]
    alpha["OPTIONS"]["sslmode"]["prefer"] = 9
    alpha["TEST"]["NAME"] = "changed"

    assert beta["OPTIONS"]["sslmode"]["prefer"] == 1
    assert base["OPTIONS"]["sslmode"]["prefer"] == 1
    assert base["TEST"]["NAME"] == "test_app"


def test_schema_settings_follow_later_changes_to_the_base() -> None:
    databases = expand({"a.example.com": {"schema_name": "alpha"}})

    databases["default"]["NAME"] = "test_app"

    assert databases["alpha"]["NAME"] == "test_app"


def test_the_callers_dict_is_not_modified() -> None:
    base = copy.deepcopy(BASE) | {"ATOMIC_REQUESTS": True}

    expand_databases({"default": base}, {"a.example.com": {"schema_name": "alpha"}})

    assert base["ATOMIC_REQUESTS"] is True
    assert base["OPTIONS"]["options"] == "-c statement_timeout=5s"


def test_schema_aliases_are_found_but_not_listed() -> None:
    databases = expand({"a.example.com": {"schema_name": "alpha"}}, other=dict(BASE))

    assert "alpha" in databases
    assert databases.get("alpha")["OPTIONS"]["application_name"] == "schemata:alpha"
    assert list(databases) == ["default", "other"]
    assert "nope" not in databases
    assert databases.get("nope") is None
    with pytest.raises(KeyError):
        databases["nope"]


def test_atomic_requests_moves_from_the_listed_aliases_to_the_schema_aliases() -> None:
    base = copy.deepcopy(BASE) | {"ATOMIC_REQUESTS": True}

    databases = expand_databases({"default": base}, {"a.example.com": {"schema_name": "alpha"}})

    assert databases.atomic_requests is True
    assert databases["default"]["ATOMIC_REQUESTS"] is False
    assert databases["alpha"]["ATOMIC_REQUESTS"] is True


def test_schema_aliases_have_no_atomic_requests_when_the_base_has_none() -> None:
    databases = expand_databases({"default": BASE}, {"a.example.com": {"schema_name": "alpha"}})

    assert databases["alpha"]["ATOMIC_REQUESTS"] is False


def test_domains_sharing_a_schema_make_one_schema_with_the_first_domains_config() -> None:
    databases = expand(
        {
            "Alpha.Example.com": {"schema_name": "alpha", "plan": "pro"},
            "www.alpha.example.com.": {"schema_name": "alpha", "plan": "ignored"},
        }
    )

    schema = databases.schemas["alpha"]
    assert schema == Schema(
        name="alpha",
        alias="alpha",
        domains=("alpha.example.com", "www.alpha.example.com"),
        config={"plan": "pro"},
    )
    assert dict(schema.config) == {"plan": "pro"}
    assert databases.domains["www.alpha.example.com"] is schema
    assert {schema: 1}[schema] == 1
    with pytest.raises(TypeError):
        schema.config["plan"] = "free"  # type: ignore[index]
    with pytest.raises(AttributeError):
        schema.name = "beta"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Alpha.Example.COM", "alpha.example.com"),
        ("alpha.example.com:8000", "alpha.example.com"),
        ("alpha.example.com.", "alpha.example.com"),
        ("alpha.example.com.:443", "alpha.example.com"),
        ("[::1]:8000", "[::1]"),
        ("[::1]", "[::1]"),
    ],
)
def test_hosts_are_normalised(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        (
            {"a.example.com": {"schema_name": "Alpha"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'Alpha' is invalid: use 1 to 63 "
            "lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "alpha -c statement_timeout=1"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'alpha -c statement_timeout=1' is "
            "invalid: use 1 to 63 lower-case ASCII letters, digits and underscores, not "
            "starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "alpha,beta"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'alpha,beta' is invalid: use 1 to "
            "63 lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "x" * 64}},
            f"SCHEMATA_DOMAINS['a.example.com']: schema name {'x' * 64!r} is invalid: use 1 "
            f"to 63 lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "café"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'café' is invalid: use 1 to 63 "
            "lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "1st"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name '1st' is invalid: use 1 to 63 "
            "lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "alpha\n"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'alpha\\n' is invalid: use 1 to "
            "63 lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": ""}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name '' is invalid: use 1 to 63 "
            "lower-case ASCII letters, digits and underscores, not starting with a digit.",
        ),
        (
            {"a.example.com": {"schema_name": "pg_alpha"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'pg_alpha' starts with 'pg_', "
            "which PostgreSQL reserves.",
        ),
        (
            {"a.example.com": {"schema_name": "public"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'public' is reserved by PostgreSQL.",
        ),
        (
            {"a.example.com": {"schema_name": "information_schema"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema name 'information_schema' is reserved "
            "by PostgreSQL.",
        ),
        (
            {"a.example.com": {"plan": "pro"}},
            "SCHEMATA_DOMAINS['a.example.com'] must be a dict with a 'schema_name' key.",
        ),
        (
            {"a.example.com": "alpha"},
            "SCHEMATA_DOMAINS['a.example.com'] must be a dict with a 'schema_name' key.",
        ),
        (
            {"a.example.com": {"schema_name": 7}},
            "SCHEMATA_DOMAINS['a.example.com']['schema_name'] must be a string, not int.",
        ),
        (
            {"a.example.com": {"schema_name": "alpha"}, "A.example.com:80": {"schema_name": "b"}},
            "SCHEMATA_DOMAINS['A.example.com:80']: same host as 'a.example.com' once "
            "lower-cased and stripped of port and trailing dot ('a.example.com'). List each "
            "host once.",
        ),
        (
            {"a.example.com": {"schema_name": "alpha"}, "a.example.com.": {"schema_name": "b"}},
            "SCHEMATA_DOMAINS['a.example.com.']: same host as 'a.example.com' once "
            "lower-cased and stripped of port and trailing dot ('a.example.com'). List each "
            "host once.",
        ),
        (
            {"a.example.com": {"schema_name": "default"}},
            "SCHEMATA_DOMAINS['a.example.com']: schema 'default' would be the database alias "
            "'default', which DATABASES already defines. Rename the schema or that alias.",
        ),
        (
            {"": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS: every key must be a non-empty domain string, got ''.",
        ),
        (
            {7: {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS: every key must be a non-empty domain string, got 7.",
        ),
        (
            {"bücher.localhost": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS['bücher.localhost']: browsers send this host as "
            "'xn--bcher-kva.localhost' (its IDNA form); list that instead.",
        ),
        (
            {"alpha.localhost\x00": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS['alpha.localhost\\x00']: 'alpha.localhost\\x00' is not a valid "
            "host name, so no request could ever have it (Django refuses such a Host header "
            "before any middleware).",
        ),
        (
            {"*.localhost": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS['*.localhost']: '*.localhost' is not a valid host name, so no "
            "request could ever have it (Django refuses such a Host header before any "
            "middleware).",
        ),
        (
            {"☃": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS['☃']: browsers send this host as 'xn--n3h' (its IDNA form); list "
            "that instead.",
        ),
        (
            {"https://a.example.com/": {"schema_name": "alpha"}},
            "SCHEMATA_DOMAINS['https://a.example.com/']: a domain is a host name such as "
            "'alpha.example.com'.",
        ),
    ],
)
def test_bad_settings_raise_improperly_configured_naming_the_domain(
    domains: dict[Any, Any], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        expand(domains)

    assert str(excinfo.value) == message


def test_domains_must_be_a_mapping() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        expand_databases({"default": {}}, ["a.example.com"])  # type: ignore[arg-type]

    assert str(excinfo.value) == (
        "SCHEMATA_DOMAINS must be a dict of domain -> {'schema_name': ...}, not list."
    )


def test_a_default_database_is_required() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        expand_databases({"main": {}}, {})

    assert str(excinfo.value) == "expand_databases() needs a 'default' entry in DATABASES."


def test_ten_thousand_domains_make_aliases_that_are_found_but_not_listed() -> None:
    domains = {f"t{i}.example.com": {"schema_name": f"t{i}"} for i in range(10_000)}

    databases = expand(domains)

    # Django walks the listed aliases several times per request: they stay the user's own.
    assert list(databases) == ["default"]
    assert len(databases.schemas) == 10_000
    assert "t9999" in databases
    assert databases["t9999"]["OPTIONS"]["application_name"] == "schemata:t9999"
    assert databases.search_path("t0") == "t0"


def test_derived_schema_settings_are_kept_for_a_bounded_number_of_schemas() -> None:
    count = DERIVED_CACHE_SIZE + 100
    databases = expand({f"t{i}.example.com": {"schema_name": f"t{i}"} for i in range(count)})

    for i in range(count):
        assert databases[f"t{i}"]["OPTIONS"]["application_name"] == f"schemata:t{i}"

    assert len(databases.__dict__["_derived"]) == DERIVED_CACHE_SIZE
    assert "t0" not in databases.__dict__["_derived"]  # the oldest went first
    assert databases["t0"]["OPTIONS"]["application_name"] == "schemata:t0"


def test_ip_literals_and_idna_hosts_are_accepted() -> None:
    databases = expand(
        {
            "[::1]:8000": {"schema_name": "alpha"},
            "127.0.0.1": {"schema_name": "beta"},
            "xn--bcher-kva.localhost": {"schema_name": "gamma"},
        }
    )

    assert sorted(databases.domains) == ["127.0.0.1", "[::1]", "xn--bcher-kva.localhost"]


def test_a_host_with_no_idna_form_is_refused_as_invalid() -> None:
    with pytest.raises(ImproperlyConfigured, match="is not a valid host name"):
        expand({"é" * 70 + ".localhost": {"schema_name": "alpha"}})
