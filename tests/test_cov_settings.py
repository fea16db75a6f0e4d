"""Settings edge cases: malformed values the checks and expand_databases() meet, and what the
admin and shell show of the package's models."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from schemata import expand_databases
from schemata.auth.models import Membership
from schemata.models import Domain, Tenant
from tests.test_checks import check_output

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

BASE: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql", "NAME": "app"}


def test_schemata_domains_that_is_not_a_dict_counts_as_other_domains() -> None:
    with override_settings(SCHEMATA_DOMAINS=["alpha.example.com"]):
        output = check_output()

    assert "(schemata.E002) DATABASES was expanded for other domains" in output


def test_public_among_the_extension_schemas_is_not_an_invalid_name() -> None:
    with override_settings(SCHEMATA_EXTENSION_SCHEMAS=["public"]):
        assert check_output() == ""


@override_settings(
    SCHEMATA_SHARED_APPS=["contenttypes", "auth", "sessions"],
    SESSION_ENGINE="nowhere.sessions",
)
def test_an_unimportable_session_engine_is_left_for_django_to_report() -> None:
    assert "schemata.E013" not in check_output()


@override_settings(
    SCHEMATA_SHARED_APPS=["contenttypes", "auth", "sessions"],
    AUTHENTICATION_BACKENDS=["nowhere.backends.Backend"],
)
def test_shared_users_with_only_an_unimportable_backend_are_an_error() -> None:
    assert (
        "?: (schemata.E014) Users are shared by every tenant, and nothing limits them to the "
        "tenants that grant them access." in check_output()
    )


def test_a_list_in_the_base_settings_is_copied_so_changes_to_it_reach_the_schema_alias() -> None:
    base = {**copy.deepcopy(BASE), "TEST": {"DEPENDENCIES": ["other"]}}
    databases = expand_databases({"default": base}, {"a.example.com": {"schema_name": "alpha"}})
    assert databases["alpha"]["TEST"]["DEPENDENCIES"] == ["other"]

    databases["default"]["TEST"]["DEPENDENCIES"].append("third")

    assert databases["alpha"]["TEST"]["DEPENDENCIES"] == ["other", "third"]
    assert databases["alpha"]["TEST"]["DEPENDENCIES"] is not base["TEST"]["DEPENDENCIES"]


def test_one_schema_on_two_databases_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        expand_databases(
            {"default": copy.deepcopy(BASE), "other": copy.deepcopy(BASE)},
            {
                "a.example.com": {"schema_name": "shop"},
                "b.example.com": {"schema_name": "shop", "database": "other"},
            },
        )

    assert str(excinfo.value) == (
        "SCHEMATA_DOMAINS['b.example.com']: schema 'shop' is on database 'other' here and on "
        "'default' for 'a.example.com'. A schema lives on one server."
    )


def test_a_domain_on_an_unknown_database_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        expand_databases(
            {"default": copy.deepcopy(BASE)},
            {"a.example.com": {"schema_name": "shop", "database": "gone"}},
        )

    assert str(excinfo.value) == (
        "SCHEMATA_DOMAINS['a.example.com']['database']: 'gone' is not an alias of DATABASES "
        "(which has 'default')."
    )


def test_models_read_as_their_schema_host_and_user() -> None:
    tenant = Tenant(schema_name="shop")

    assert str(tenant) == "shop"
    assert str(Domain(domain="shop.example.com", tenant=tenant)) == "shop.example.com"
    assert str(Membership(user_id=7)) == "membership of user 7"
