from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from schemata import expand_databases

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def check_output() -> str:
    """What ``manage.py check`` reports as errors ("" when it passes)."""
    try:
        call_command("check")
    except SystemCheckError as error:
        return str(error)
    return ""


def test_the_test_settings_pass_every_check() -> None:
    out = StringIO()

    call_command("check", stdout=out)

    assert out.getvalue() == "System check identified no issues (0 silenced).\n"


def test_databases_not_built_by_expand_databases() -> None:
    with override_settings(DATABASES={"default": copy.deepcopy(settings.DATABASES["default"])}):
        output = check_output()

    assert "?: (schemata.E001) DATABASES was not built by schemata.expand_databases()." in output
    assert "HINT: Set DATABASES = expand_databases({'default': ...}, SCHEMATA_DOMAINS)." in output


def test_databases_expanded_for_other_domains() -> None:
    with override_settings(SCHEMATA_DOMAINS={"x.example.com": {"schema_name": "x"}}):
        output = check_output()

    assert (
        "?: (schemata.E002) DATABASES was expanded for other domains than SCHEMATA_DOMAINS lists."
        in output
    )


def test_invalid_schemata_domains_in_the_check_count_as_a_mismatch() -> None:
    with override_settings(SCHEMATA_DOMAINS={"x.example.com": {"schema_name": "Bad"}}):
        output = check_output()

    assert "(schemata.E002)" in output


def test_router_missing() -> None:
    with override_settings(DATABASE_ROUTERS=[]):
        output = check_output()

    assert (
        "?: (schemata.E003) 'schemata.routers.SchemataRouter' is missing from DATABASE_ROUTERS."
        in output
    )
    assert "HINT: Without it, every query goes to 'default' whatever schema is active." in output


def test_middleware_missing() -> None:
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        output = check_output()

    assert (
        "?: (schemata.E004) 'schemata.middleware.SchemataMiddleware' is missing from MIDDLEWARE."
        in output
    )


def test_middleware_not_first() -> None:
    with override_settings(
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "schemata.middleware.SchemataMiddleware",
        ]
    ):
        output = check_output()

    assert (
        "?: (schemata.E005) 'schemata.middleware.SchemataMiddleware' is not first in MIDDLEWARE."
        in output
    )
    assert (
        "HINT: Middleware before it ('django.contrib.sessions.middleware.SessionMiddleware', "
        "...) runs with no schema active: sessions and users would be read from and saved to "
        "'default'." in output
    )


def test_engine_not_postgresql() -> None:
    databases = expand_databases(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        settings.SCHEMATA_DOMAINS,
    )

    with override_settings(DATABASES=databases):
        output = check_output()

    assert (
        "?: (schemata.E006) DATABASES['default'] uses 'django.db.backends.sqlite3', a 'sqlite' "
        "engine." in output
    )


def test_fallback_schema_unknown() -> None:
    with override_settings(SCHEMATA_FALLBACK_SCHEMA="nope"):
        output = check_output()

    assert "?: (schemata.E007) SCHEMATA_FALLBACK_SCHEMA is 'nope', which no domain uses." in output
