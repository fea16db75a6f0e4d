"""Every ``SCHEMATA_*`` setting, read live from ``django.conf.settings`` in one place."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from schemata.databases import SchemataDatabases


class PoolSettings(NamedTuple):
    max_size: int
    timeout: float


class Settings:
    """Each property reads its setting anew (``override_settings`` needs no signal here); the
    few read on every hand-out of a connection keep what they derived from the last value they
    saw, and derive again when the value differs."""

    def __init__(self) -> None:
        self._derived: dict[str, tuple[Any, Any]] = {}
        self._raw: dict[str, Any] = {}
        self._raw_of: object = None

    def _get(self, name: str, default: Any) -> Any:
        """``getattr(settings, name, default)``, kept until the settings object is replaced
        (``override_settings``) or a ``setting_changed`` signal: a setting the project leaves
        out raises inside Django's settings on every read, which the hand-out of a connection
        would otherwise pay several times."""
        wrapped = settings._wrapped  # type: ignore[misc]
        if self._raw_of is not wrapped:
            self._raw = {}
            self._raw_of = wrapped
        try:
            return self._raw[name]
        except KeyError:
            value = self._raw[name] = getattr(settings, name, default)
            return value

    def forget(self, **kwargs: Any) -> None:
        """``setting_changed`` receiver: read every setting anew."""
        self._raw = {}

    def _memo(self, name: str, raw: Any, derive: Any) -> Any:
        cached = self._derived.get(name)
        if cached is not None and cached[0] == raw:
            return cached[1]
        value = derive(raw)
        # A copy of the raw value: a list changed in place must not match its old self.
        self._derived[name] = (copy.deepcopy(raw), value)
        return value

    @property
    def databases(self) -> SchemataDatabases:
        """``DATABASES``, which must come from ``expand_databases()``."""
        databases = settings.DATABASES
        if not isinstance(databases, SchemataDatabases):
            raise ImproperlyConfigured(
                "DATABASES was not built by schemata.expand_databases(): set "
                "DATABASES = expand_databases({'default': ...}, SCHEMATA_DOMAINS)."
            )
        return databases

    @property
    def DOMAINS(self) -> Mapping[str, Any] | None:
        domains: Mapping[str, Any] | None = self._get("SCHEMATA_DOMAINS", None)
        return domains

    @property
    def STRICT(self) -> bool:
        return bool(self._get("SCHEMATA_STRICT", False))

    @property
    def FALLBACK_SCHEMA(self) -> str | None:
        fallback: str | None = self._get("SCHEMATA_FALLBACK_SCHEMA", None)
        return fallback

    @property
    def SHARED_APPS(self) -> frozenset[str]:
        """App labels whose tables live in ``public`` only (with any, ``schemata``'s own)."""

        def derive(raw: Any) -> frozenset[str]:
            shared = frozenset(raw)
            # The run-time tenants' tables are in public whatever the user lists: with shared
            # apps, that keeps them out of the guard schema and of the public leftovers.
            return shared | {"schemata"} if shared else shared

        return self._memo(  # type: ignore[no-any-return]
            "SHARED_APPS", self._get("SCHEMATA_SHARED_APPS", ()), derive
        )

    @property
    def EXTENSION_SCHEMAS(self) -> tuple[str, ...]:
        """Schemas, after ``public``, on every schema's search path (where extensions live)."""
        return tuple(self._get("SCHEMATA_EXTENSION_SCHEMAS", ()))

    @property
    def SHARED_CACHES(self) -> frozenset[str]:
        """Cache aliases every schema shares: their keys need not carry a schema."""
        return frozenset(self._get("SCHEMATA_SHARED_CACHES", ()))

    @property
    def POOL(self) -> PoolSettings:
        """``SCHEMATA_POOL``: the cap and wait of the connections schema aliases share."""
        return self._memo(  # type: ignore[no-any-return]
            "POOL", self._get("SCHEMATA_POOL", None), _pool_settings
        )

    @property
    def SCHEMA_DATABASE(self) -> str | None:
        """``SCHEMATA_SCHEMA_DATABASE``: a database name per schema (a PgBouncer database
        whose ``connect_query`` sets the path), e.g. ``"app_{schema}"``; ``None``: the base's."""
        database: str | None = self._get("SCHEMATA_SCHEMA_DATABASE", None)
        return database

    @property
    def RUNTIME_TENANTS(self) -> bool:
        """``SCHEMATA_RUNTIME_TENANTS``: also serve the tenants registered in the database
        (``schemata.create_tenant()``); off, only ``SCHEMATA_DOMAINS`` is read, as before."""
        return bool(self._get("SCHEMATA_RUNTIME_TENANTS", False))

    @property
    def TENANT_REFRESH(self) -> float:
        """``SCHEMATA_TENANT_REFRESH``: seconds a process may serve run-time tenants from
        memory before it checks the database for changes (removals reach it within that)."""
        value = float(self._get("SCHEMATA_TENANT_REFRESH", 2.0))
        if value < 0:
            raise ImproperlyConfigured("SCHEMATA_TENANT_REFRESH must be at least 0 (seconds).")
        return value

    @property
    def TENANT_MISS_RATE(self) -> float:
        """``SCHEMATA_TENANT_MISS_RATE``: queries per second a process may make to look for
        unknown hosts and names among run-time tenants; lookups in between miss at no cost."""
        value = float(self._get("SCHEMATA_TENANT_MISS_RATE", 10.0))
        if value <= 0:
            raise ImproperlyConfigured(
                "SCHEMATA_TENANT_MISS_RATE must be more than 0 (queries per second)."
            )
        return value

    @property
    def ATOMIC_GUARD(self) -> bool:
        value = self._get("SCHEMATA_ATOMIC_GUARD", None)
        return bool(settings.DEBUG if value is None else value)


def _pool_settings(raw: Any) -> PoolSettings:
    value = dict(raw or {})
    unknown = set(value) - {"max_size", "timeout"}
    if unknown:
        raise ImproperlyConfigured(
            f"SCHEMATA_POOL has unknown keys {sorted(unknown)}: use 'max_size' and 'timeout'."
        )
    pool = PoolSettings(int(value.get("max_size", 10)), float(value.get("timeout", 30.0)))
    if pool.max_size < 1 or pool.timeout < 0:
        raise ImproperlyConfigured(
            "SCHEMATA_POOL['max_size'] must be at least 1 and SCHEMATA_POOL['timeout'] at "
            "least 0 (seconds)."
        )
    return pool


conf = Settings()
