from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.core.checks import Warning
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

import schemata
from schemata.cache import check_cache_key_functions, clear_schema, make_key

KEY_FUNCTION = "schemata.cache.make_key"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
#: A Redis database of its own on the session's redis-server, emptied around each test.
REDIS_DB = 11

ALPHA = "alpha.example.com"
BETA = "beta.example.com"

pytestmark = pytest.mark.urls("tests.cache_urls")


@pytest.fixture(params=["locmem", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings of a real local-memory cache, then of a real Redis cache."""
    if request.param == "locmem":
        return {"BACKEND": LOCMEM, "LOCATION": "schemata-tests"}
    redis_url = request.getfixturevalue("redis_url")
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{redis_url}?db={REDIS_DB}",
    }


@contextmanager
def using_caches(**aliases: dict[str, Any]) -> Iterator[None]:
    """Use these CACHES, each one empty; Django drops the cache objects of the old settings."""
    with override_settings(CACHES=aliases):
        for alias in aliases:
            caches[alias].clear()
        try:
            yield
        finally:
            for alias in aliases:
                caches[alias].clear()


@pytest.fixture
def tenant_cache(backend: dict[str, Any]) -> Iterator[None]:
    """Make ``default`` that backend, with schemata's key function."""
    with using_caches(default={**backend, "KEY_FUNCTION": KEY_FUNCTION}):
        yield


def redis_keys() -> list[bytes]:
    return sorted(caches["default"]._cache.get_client().keys())  # type: ignore[attr-defined]


# Keys


def test_keys_carry_the_prefix_the_schema_and_the_version() -> None:
    with schemata.override("alpha"):
        key = make_key("greeting", "site", 3)

    assert key == "site:alpha:3:greeting"


def test_keys_made_with_no_schema_active_are_in_the_public_namespace() -> None:
    assert make_key("greeting", "site", 3) == "site:!:3:greeting"


# Requests


@pytest.mark.usefixtures("tenant_cache")
def test_beta_does_not_see_the_value_alpha_cached() -> None:
    client = Client()
    client.get("/greeting/", HTTP_HOST=ALPHA)

    response = client.get("/greeting/", HTTP_HOST=BETA)

    assert response.content == b"hello from beta"


def test_with_djangos_key_function_beta_sees_the_value_alpha_cached(
    backend: dict[str, Any],
) -> None:
    client = Client()

    with using_caches(default=backend):
        client.get("/greeting/", HTTP_HOST=ALPHA)
        response = client.get("/greeting/", HTTP_HOST=BETA)

    assert response.content == b"hello from alpha"


@pytest.mark.usefixtures("tenant_cache")
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_cache_page_stores_pages_in_the_schemas_namespace() -> None:
    Client().get("/page/", HTTP_HOST=BETA)

    assert {key.split(b":")[1] for key in redis_keys()} == {b"beta"}


@pytest.mark.usefixtures("tenant_cache")
def test_clear_schema_expires_that_schemas_cached_pages_only() -> None:
    client = Client()
    alpha = client.get("/page/", HTTP_HOST=ALPHA).content
    beta = client.get("/page/", HTTP_HOST=BETA).content

    clear_schema("alpha")

    assert client.get("/page/", HTTP_HOST=ALPHA).content != alpha
    assert client.get("/page/", HTTP_HOST=BETA).content == beta


@pytest.mark.usefixtures("tenant_cache")
def test_async_cache_calls_use_the_active_schema() -> None:
    async def cache_in_alpha_read_in_beta() -> Any:
        with schemata.override("alpha"):
            await cache.aset("greeting", "hello from alpha")
        with schemata.override("beta"):
            return await cache.aget("greeting")

    assert asyncio.run(cache_in_alpha_read_in_beta()) is None


# The public namespace


@pytest.mark.usefixtures("tenant_cache")
def test_a_schema_does_not_see_values_cached_with_no_schema_active() -> None:
    cache.set("greeting", "hello from public")

    with schemata.override("alpha"):
        value = cache.get("greeting")

    assert value is None


@pytest.mark.usefixtures("tenant_cache")
def test_code_with_no_schema_active_does_not_see_a_schemas_values() -> None:
    with schemata.override("alpha"):
        cache.set("greeting", "hello from alpha")

    assert cache.get("greeting") is None


@pytest.mark.usefixtures("tenant_cache")
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_redis_stores_each_key_under_its_schema_and_version() -> None:
    cache.set("greeting", "public")
    with schemata.override("alpha"):
        cache.set("greeting", "alpha", version=2)

    assert redis_keys() == [b":!:1:greeting", b":alpha:2:greeting"]


# clear_schema


def fill(key: str = "greeting") -> None:
    """Cache ``key`` with no schema active, in alpha (versions 1 and 2) and in beta."""
    cache.set(key, "public")
    with schemata.override("alpha"):
        cache.set(key, "alpha")
        cache.set(key, "alpha v2", version=2)
    with schemata.override("beta"):
        cache.set(key, "beta")


@pytest.mark.usefixtures("tenant_cache")
def test_clear_schema_deletes_every_version_of_that_schemas_keys() -> None:
    fill()

    deleted = clear_schema("alpha")

    with schemata.override("alpha"):
        assert cache.get("greeting") is None
        assert cache.get("greeting", version=2) is None
    assert deleted == 2


@pytest.mark.usefixtures("tenant_cache")
def test_clear_schema_keeps_other_schemas_keys_and_public_ones() -> None:
    fill()

    clear_schema("alpha")

    with schemata.override("beta"):
        assert cache.get("greeting") == "beta"
    assert cache.get("greeting") == "public"


@pytest.mark.usefixtures("tenant_cache")
def test_clear_schema_accepts_a_schema_object() -> None:
    fill()

    deleted = clear_schema(schemata.get_schema("beta"))

    assert deleted == 1


def test_clear_schema_clears_the_cache_it_is_given(backend: dict[str, Any]) -> None:
    tenant = {**backend, "KEY_FUNCTION": KEY_FUNCTION}
    with using_caches(default=tenant, pages={**tenant, "KEY_PREFIX": "pages"}):
        with schemata.override("alpha"):
            cache.set("greeting", "kept")
            caches["pages"].set("greeting", "cleared")

        deleted = clear_schema("alpha", alias="pages")

        with schemata.override("alpha"):
            assert (cache.get("greeting"), caches["pages"].get("greeting")) == ("kept", None)
    assert deleted == 1


def test_clear_schema_leaves_a_cache_whose_prefix_ends_with_the_schema_name(
    backend: dict[str, Any],
) -> None:
    # Both caches share one store: 'site:alpha:!:1:greeting' starts like site's alpha keys.
    tenant = {**backend, "KEY_FUNCTION": KEY_FUNCTION}
    with using_caches(
        default={**tenant, "KEY_PREFIX": "site"}, other={**tenant, "KEY_PREFIX": "site:alpha"}
    ):
        caches["other"].set("greeting", "kept")

        deleted = clear_schema("alpha")

        assert caches["other"].get("greeting") == "kept"
    assert deleted == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_clear_schema_reads_glob_characters_in_the_key_prefix_literally(
    backend: dict[str, Any],
) -> None:
    tenant = {**backend, "KEY_FUNCTION": KEY_FUNCTION}
    with using_caches(
        default={**tenant, "KEY_PREFIX": "site?"}, other={**tenant, "KEY_PREFIX": "site2"}
    ):
        with schemata.override("alpha"):
            caches["other"].set("greeting", "kept")

        deleted = clear_schema("alpha")

        with schemata.override("alpha"):
            assert caches["other"].get("greeting") == "kept"
    assert deleted == 0


@pytest.mark.usefixtures("tenant_cache")
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_clear_schema_deletes_more_keys_than_one_redis_scan_returns() -> None:
    with schemata.override("alpha"):
        cache.set_many({f"k{i}": i for i in range(2500)})

    deleted = clear_schema("alpha")

    assert (deleted, redis_keys()) == (2500, [])


def test_clear_schema_refuses_an_invalid_schema_name() -> None:
    with pytest.raises(ValueError) as excinfo:
        clear_schema("alpha*")

    assert str(excinfo.value) == (
        "schema name 'alpha*' is invalid: use 1 to 63 lower-case ASCII letters, digits and "
        "underscores, not starting with a digit."
    )


def test_clear_schema_refuses_a_cache_whose_keys_carry_no_schema() -> None:
    with using_caches(default={"BACKEND": LOCMEM}), pytest.raises(ImproperlyConfigured) as exc:
        clear_schema("alpha")

    assert str(exc.value) == (
        "clear_schema() needs CACHES['default']['KEY_FUNCTION'] = 'schemata.cache.make_key': "
        "without it, keys do not say which schema they belong to."
    )


def test_clear_schema_refuses_a_backend_whose_keys_cannot_be_listed(tmp_path: Path) -> None:
    files = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path),
        "KEY_FUNCTION": KEY_FUNCTION,
    }

    with using_caches(default=files), pytest.raises(NotImplementedError) as excinfo:
        clear_schema("alpha")

    assert str(excinfo.value) == (
        "clear_schema() cannot list the keys of "
        "django.core.cache.backends.filebased.FileBasedCache (CACHES['default']): use Redis or "
        "local memory, or cache.clear() to clear every schema."
    )


def test_clear_schema_on_a_dummy_cache_deletes_nothing() -> None:
    with using_caches(default={"BACKEND": "django.core.cache.backends.dummy.DummyCache"}):
        assert clear_schema("alpha") == 0


# The check


def warning(alias: str) -> Warning:
    return Warning(
        f"CACHES[{alias!r}] builds keys without the active schema: a schema can read values "
        f"cached by another.",
        hint=f"Set CACHES[{alias!r}]['KEY_FUNCTION'] = 'schemata.cache.make_key', or list "
        f"{alias!r} in SCHEMATA_SHARED_CACHES if every schema is meant to share it.",
        id="schemata.W001",
    )


def test_the_check_warns_about_each_cache_without_the_key_function() -> None:
    with override_settings(
        CACHES={
            "default": {"BACKEND": LOCMEM},
            "tenant": {"BACKEND": LOCMEM, "KEY_FUNCTION": KEY_FUNCTION},
            "pages": {
                "BACKEND": LOCMEM,
                "KEY_FUNCTION": "django.core.cache.backends.base.default_key_func",
            },
        }
    ):
        assert check_cache_key_functions() == [warning("default"), warning("pages")]


def test_the_check_accepts_the_key_function_itself() -> None:
    with override_settings(CACHES={"default": {"BACKEND": LOCMEM, "KEY_FUNCTION": make_key}}):
        assert check_cache_key_functions() == []


def test_the_check_warns_about_a_key_function_that_cannot_be_imported() -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": LOCMEM, "KEY_FUNCTION": "schemata.cache.missing"}}
    ):
        assert check_cache_key_functions() == [warning("default")]


def test_the_check_leaves_caches_listed_in_schemata_shared_caches() -> None:
    with override_settings(
        CACHES={"default": {"BACKEND": LOCMEM}, "public": {"BACKEND": LOCMEM}},
        SCHEMATA_SHARED_CACHES=["public"],
    ):
        assert check_cache_key_functions() == [warning("default")]
