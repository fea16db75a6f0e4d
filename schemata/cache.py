"""Cache keys per schema: ``CACHES[alias]["KEY_FUNCTION"] = "schemata.cache.make_key"``.

A key is ``<KEY_PREFIX>:<schema>:<VERSION>:<key>``, with ``!`` in place of the schema when none
is active: no schema name contains ``!``, so no tenant can reach the public namespace.

``clear_schema()`` deletes a tenant's keys by their prefix. The alternative, a per-schema
generation number kept in the cache and folded into every key, would need a cache read inside
every key computation (``make_key`` is not told which cache it serves, and would recurse into
it): a second round trip per ``get`` on Redis, paid to make a rare operation fast. Putting
the schema right after ``KEY_PREFIX`` instead makes a tenant's keys one contiguous prefix that
a Redis ``SCAN MATCH`` or a walk of a local-memory cache finds, while ``make_key`` stays pure
string formatting. Backends whose keys cannot be listed (memcached, files) are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.checks import CheckMessage, Warning
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from schemata.conf import conf
from schemata.databases import Schema, schema_name_problem
from schemata.state import _current

KEY_FUNCTION = "schemata.cache.make_key"
# The ContextVar's bound method, not get_current_schema(): make_key runs on every cache call,
# and this keeps it within a few nanoseconds of Django's default key function.
_active_schema = _current.get
_SCAN_BATCH = 1000
# What follows the schema in a key: the version, an int.
_VERSION_START = frozenset("0123456789-")


def make_key(key: str, key_prefix: str, version: int) -> str:
    """Build a cache key in the active schema's namespace (``!`` when none is active)."""
    schema = _active_schema()
    if schema is None:
        return f"{key_prefix}:!:{version}:{key}"
    return f"{key_prefix}:{schema.name}:{version}:{key}"


def clear_schema(schema: str | Schema, alias: str = "default") -> int:
    """Delete every key of ``schema`` from the cache ``alias``; return how many were deleted."""
    name = schema.name if isinstance(schema, Schema) else schema
    problem = schema_name_problem(name)
    if problem:
        raise ValueError(problem)
    cache = caches[alias]
    if not isinstance(cache, DummyCache) and cache.key_func is not make_key:
        raise ImproperlyConfigured(
            f"clear_schema() needs CACHES[{alias!r}]['KEY_FUNCTION'] = {KEY_FUNCTION!r}: "
            f"without it, keys do not say which schema they belong to."
        )
    prefix = f"{cache.key_prefix}:{name}:"
    if isinstance(cache, LocMemCache):
        return _clear_locmem(cache, prefix)
    if isinstance(cache, RedisCache):
        return _clear_redis(cache, prefix)
    if isinstance(cache, DummyCache):
        return 0
    backend = f"{type(cache).__module__}.{type(cache).__qualname__}"
    raise NotImplementedError(
        f"clear_schema() cannot list the keys of {backend} (CACHES[{alias!r}]): use "
        f"Redis or local memory, or cache.clear() to clear every schema."
    )


def _owns(prefix: str, key: str) -> bool:
    # The version follows the schema: a digit or '-'. A cache whose KEY_PREFIX is our prefix
    # plus ':alpha' has a schema name or '!' there instead, and is left alone.
    return key.startswith(prefix) and key[len(prefix) : len(prefix) + 1] in _VERSION_START


def _clear_locmem(cache: LocMemCache, prefix: str) -> int:
    with cache._lock:  # type: ignore[attr-defined]
        keys = [key for key in cache._cache if _owns(prefix, key)]  # type: ignore[attr-defined]
        for key in keys:
            cache._delete(key)  # type: ignore[attr-defined]
    return len(keys)


def _clear_redis(cache: RedisCache, prefix: str) -> int:
    client = cache._cache.get_client(None, write=True)
    # SCAN, unlike KEYS, never blocks the server for the whole keyspace.
    pattern = _glob_escape(prefix) + "[0-9\\-]*"
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) == _SCAN_BATCH:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def check_cache_key_functions(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn about each cache whose keys do not carry the active schema."""
    warnings: list[CheckMessage] = []
    shared = conf.SHARED_CACHES
    for alias, options in settings.CACHES.items():
        if alias in shared or _is_make_key(options.get("KEY_FUNCTION")):
            continue
        warnings.append(
            Warning(
                f"CACHES[{alias!r}] builds keys without the active schema: a schema can read "
                f"values cached by another.",
                hint=f"Set CACHES[{alias!r}]['KEY_FUNCTION'] = {KEY_FUNCTION!r}, or list "
                f"{alias!r} in SCHEMATA_SHARED_CACHES if every schema is meant to share it.",
                id="schemata.W001",
            )
        )
    return warnings


def _is_make_key(function: object) -> bool:
    if isinstance(function, str):
        try:
            function = import_string(function)
        except ImportError:
            return False
    return function is make_key
