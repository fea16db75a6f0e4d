from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

import schemata
from schemata import UnknownSchema, get_current_schema


@pytest.fixture(autouse=True)
def no_schema_active() -> None:
    assert get_current_schema() is None


def test_no_schema_is_active_by_default() -> None:
    assert get_current_schema() is None


def test_activate_and_reset_with_the_token() -> None:
    token = schemata.activate("alpha")

    schema = get_current_schema()
    schemata.reset(token)

    assert schema is not None
    assert (schema.name, schema.alias, schema.domains) == (
        "alpha",
        "alpha",
        ("alpha.example.com", "www.alpha.example.com"),
    )
    assert dict(schema.config) == {"plan": "pro", "colour": "red"}
    assert get_current_schema() is None


def test_deactivate_leaves_no_schema_active() -> None:
    outer = schemata.activate("alpha")
    inner = schemata.deactivate()

    assert get_current_schema() is None
    schemata.reset(inner)
    assert get_current_schema().name == "alpha"  # type: ignore[union-attr]
    schemata.reset(outer)


def test_unknown_schema_names_raise() -> None:
    with pytest.raises(UnknownSchema) as excinfo:
        schemata.activate("nope")

    assert str(excinfo.value) == "No domain in SCHEMATA_DOMAINS uses the schema 'nope'."
    assert get_current_schema() is None


def test_override_nests_and_restores() -> None:
    with schemata.override("alpha") as alpha:
        with schemata.override("beta"):
            assert get_current_schema().name == "beta"  # type: ignore[union-attr]
            with schemata.override(None):
                assert get_current_schema() is None
        assert get_current_schema() is alpha

    assert get_current_schema() is None


def test_override_restores_after_an_exception() -> None:
    with pytest.raises(ValueError), schemata.override("alpha"):
        raise ValueError

    assert get_current_schema() is None


def test_override_accepts_a_schema_object() -> None:
    beta = schemata.get_schema("beta")

    with schemata.override(beta):
        assert get_current_schema() is beta


def test_override_as_a_decorator_is_safe_in_many_threads_at_once() -> None:
    # Every call is inside the decorated function before any leaves it: one shared context
    # manager would hand each thread the token another thread made.
    inside = threading.Barrier(8)

    @schemata.override("beta")
    def current(_: int) -> str | None:
        inside.wait(timeout=30)
        schema = get_current_schema()
        return schema.name if schema else None

    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(current, range(200)))

    assert names == ["beta"] * 200
    assert get_current_schema() is None


def test_override_as_a_decorator_nests_in_recursive_calls() -> None:
    @schemata.override("alpha")
    def depth(n: int) -> list[str | None]:
        inner = depth(n - 1) if n else []
        schema = get_current_schema()
        return [*inner, schema.name if schema else None]

    assert depth(2) == ["alpha", "alpha", "alpha"]
    assert get_current_schema() is None


def test_the_schema_follows_asyncio_to_thread() -> None:
    async def main() -> str:
        with schemata.override("alpha"):
            return await asyncio.to_thread(lambda: get_current_schema().name)  # type: ignore[union-attr]

    assert asyncio.run(main()) == "alpha"


def test_the_schema_follows_executor_submit_with_context_run() -> None:
    with schemata.override("beta"), ThreadPoolExecutor(1) as pool:
        context = contextvars.copy_context()
        future = pool.submit(context.run, lambda: get_current_schema().name)  # type: ignore[union-attr]

        assert future.result() == "beta"


def test_the_schema_follows_sync_to_async_and_back() -> None:
    def in_thread() -> str:
        return get_current_schema().name  # type: ignore[union-attr]

    async def main() -> str:
        with schemata.override("alpha"):
            return await sync_to_async(in_thread)()

    assert async_to_sync(main)() == "alpha"
    assert get_current_schema() is None


def test_a_schema_activated_in_a_task_stays_in_that_task() -> None:
    async def task(name: str) -> str:
        schemata.activate(name)
        await asyncio.sleep(0)
        return get_current_schema().name  # type: ignore[union-attr]

    async def main() -> list[str]:
        return list(await asyncio.gather(task("alpha"), task("beta")))

    assert asyncio.run(main()) == ["alpha", "beta"]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_activating_without_expanded_databases_says_how_to_fix_it() -> None:
    with (
        override_settings(DATABASES={"default": {}}),
        pytest.raises(ImproperlyConfigured) as excinfo,
    ):
        schemata.activate("alpha")

    assert str(excinfo.value) == (
        "DATABASES was not built by schemata.expand_databases(): set "
        "DATABASES = expand_databases({'default': ...}, SCHEMATA_DOMAINS)."
    )
