"""System checks for a misconfigured django-schemata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db.utils import load_backend

from schemata.conf import conf
from schemata.databases import SchemataDatabases, expand_databases

ROUTER = "schemata.routers.SchemataRouter"
MIDDLEWARE = "schemata.middleware.SchemataMiddleware"


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    databases = settings.DATABASES
    if not isinstance(databases, SchemataDatabases):
        errors.append(
            Error(
                "DATABASES was not built by schemata.expand_databases().",
                hint="Set DATABASES = expand_databases({'default': ...}, SCHEMATA_DOMAINS).",
                id="schemata.E001",
            )
        )
    elif conf.DOMAINS is not None and not _expands(databases, conf.DOMAINS):
        errors.append(
            Error(
                "DATABASES was expanded for other domains than SCHEMATA_DOMAINS lists.",
                hint="Pass SCHEMATA_DOMAINS itself to expand_databases(), after its last change.",
                id="schemata.E002",
            )
        )
    if ROUTER not in settings.DATABASE_ROUTERS:
        errors.append(
            Error(
                f"{ROUTER!r} is missing from DATABASE_ROUTERS.",
                hint="Without it, every query goes to 'default' whatever schema is active.",
                id="schemata.E003",
            )
        )
    middleware = list(settings.MIDDLEWARE)
    if MIDDLEWARE not in middleware:
        errors.append(
            Error(
                f"{MIDDLEWARE!r} is missing from MIDDLEWARE.",
                hint="Add it first in MIDDLEWARE so that requests get their host's schema.",
                id="schemata.E004",
            )
        )
    elif middleware[0] != MIDDLEWARE:
        errors.append(
            Error(
                f"{MIDDLEWARE!r} is not first in MIDDLEWARE.",
                hint=(
                    f"Middleware before it ({middleware[0]!r}, ...) runs with no schema "
                    f"active: sessions and users would be read from and saved to 'default'."
                ),
                id="schemata.E005",
            )
        )
    if isinstance(databases, SchemataDatabases):
        engine = dict.__getitem__(databases, "default").get("ENGINE", "")
        vendor = load_backend(engine).DatabaseWrapper.vendor if engine else "dummy"
        if vendor != "postgresql":
            errors.append(
                Error(
                    f"DATABASES['default'] uses {engine!r}, a {vendor!r} engine.",
                    hint="Schemas need PostgreSQL: use 'django.db.backends.postgresql'.",
                    id="schemata.E006",
                )
            )
        fallback = conf.FALLBACK_SCHEMA
        if fallback is not None and fallback not in databases.schemas:
            errors.append(
                Error(
                    f"SCHEMATA_FALLBACK_SCHEMA is {fallback!r}, which no domain uses.",
                    hint="Name a schema_name from SCHEMATA_DOMAINS, or set it to None.",
                    id="schemata.E007",
                )
            )
    return errors


def _expands(databases: SchemataDatabases, domains: Any) -> bool:
    try:
        expected = expand_databases({"default": {}}, domains)
    except ImproperlyConfigured:
        return False
    return {h: s.name for h, s in expected.domains.items()} == {
        h: s.name for h, s in databases.domains.items()
    }
