"""System checks for a misconfigured django-schemata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db.utils import load_backend
from django.utils.module_loading import import_string

from schemata.cache import check_cache_key_functions
from schemata.conf import conf
from schemata.databases import (
    DEFAULT_BASE,
    SchemataDatabases,
    bases,
    normalize_host,
    schema_name_problem,
)
from schemata.schemas import misplaced_extensions, public_leftovers, server_connections
from schemata.storage import check_storage

register(check_cache_key_functions, Tags.caches)
register(check_storage)

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
        for base in sorted(bases(databases)):
            engine = databases[base].get("ENGINE", "")
            vendor = load_backend(engine).DatabaseWrapper.vendor if engine else "dummy"
            if vendor != "postgresql":
                errors.append(
                    Error(
                        f"DATABASES[{base!r}] uses {engine!r}, a {vendor!r} engine.",
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
        wanted = {normalize_host(d): e["schema_name"] for d, e in domains.items()}
    except (AttributeError, KeyError, TypeError):
        return False
    return wanted == {host: schema.name for host, schema in databases.domains.items()}


@register()
def check_shared_apps(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    shared = conf.SHARED_APPS
    installed = {config.label for config in apps.get_app_configs()}
    for label in sorted(shared - installed):
        errors.append(
            Error(
                f"SCHEMATA_SHARED_APPS names {label!r}, which is not an installed app label.",
                hint="Use app labels (the last part of the app's name, or its AppConfig.label).",
                id="schemata.E008",
            )
        )
    for name in conf.EXTENSION_SCHEMAS:
        problem = schema_name_problem(name) if name != "public" else None
        if problem:
            errors.append(Error(f"SCHEMATA_EXTENSION_SCHEMAS: {problem}", id="schemata.E009"))
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in shared:
            continue
        for field in model._meta.get_fields():
            related = field.related_model
            if (
                field.concrete
                and field.is_relation
                and isinstance(related, type)
                and related._meta.app_label not in shared
            ):
                errors.append(
                    Error(
                        f"{model._meta.label}.{field.name} (shared, in public) points to "
                        f"{related._meta.label}, whose tables are in each schema.",
                        hint=(
                            "Remove 'admin' from SCHEMATA_SHARED_APPS: each tenant then keeps "
                            "its own admin log, which may point to shared users."
                            if model._meta.app_label == "admin"
                            else "A table in public cannot reference a table of every schema: "
                            f"make {related._meta.app_label!r} shared, or move the relation to "
                            "a tenant model."
                        ),
                        obj=field,
                        id="schemata.E010",
                    )
                )
    return errors


@register(Tags.database)
def check_database(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    schemata_databases = settings.DATABASES
    if not isinstance(schemata_databases, SchemataDatabases):
        return errors  # schemata.E001
    for base in bases(schemata_databases):
        if base in (databases or ()):
            errors.extend(_check_server(base))
    return errors


def _check_server(base: str) -> list[CheckMessage]:
    """The database checks of one server that holds schemas."""
    errors: list[CheckMessage] = []
    # Said only when the project has several servers: one would always be 'default'.
    on = "" if base == DEFAULT_BASE else f" (database {base!r})"
    for table, label in public_leftovers(base).items() if conf.SHARED_APPS else ():
        errors.append(
            Error(
                f"public.{table}{on} belongs to the tenant app {label!r}: a schema that lacks "
                f"its own {table} would silently read and write this one.",
                hint="Make public's tenant data a tenant with 'manage.py adopt_schema SCHEMA', "
                f"move this app alone with 'manage.py move_app {label} --to SCHEMA', or drop it.",
                id="schemata.E011",
            )
        )
    pool = conf.POOL
    available = server_connections(base)
    if pool.max_size >= available:
        errors.append(
            Warning(
                f"SCHEMATA_POOL['max_size'] = {pool.max_size} is more than the server{on} can "
                f"give one process: max_connections leaves {available} for clients.",
                hint="Keep processes x (max_size + 1) within max_connections minus "
                "superuser_reserved_connections; lower max_size or raise max_connections.",
                id="schemata.W005",
            )
        )
    for extension, schema in misplaced_extensions(base).items():
        errors.append(
            Error(
                f"The extension {extension!r} is installed in the schema {schema!r}{on}, where "
                f"no other schema sees its types and functions.",
                hint=f"ALTER EXTENSION {extension} SET SCHEMA public (or a schema listed in "
                f"SCHEMATA_EXTENSION_SCHEMAS), and create extensions from a shared app.",
                id="schemata.E012",
            )
        )
    return errors


@register(Tags.security)
def check_tenant_bound_auth(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    from importlib import import_module

    from schemata.sessions import SchemaSessionMixin

    errors: list[CheckMessage] = []
    shared = conf.SHARED_APPS
    if "sessions" in shared:
        try:
            store = import_module(settings.SESSION_ENGINE).SessionStore
        except (ImportError, AttributeError):
            store = None  # Django reports a broken engine on first use
        if store is not None and not issubclass(store, SchemaSessionMixin):
            errors.append(
                Error(
                    f"Sessions are shared by every tenant and SESSION_ENGINE "
                    f"({settings.SESSION_ENGINE!r}) does not bind them to one: a session "
                    f"made on one tenant is valid on all.",
                    hint="Set SESSION_ENGINE = 'schemata.sessions.db' (or cached_db, cache, "
                    "file, signed_cookies).",
                    id="schemata.E013",
                )
            )
    user_label = settings.AUTH_USER_MODEL.partition(".")[0]
    if user_label in shared:
        from schemata.auth.backends import MembershipBackend

        backends = [_class_of(path) for path in settings.AUTHENTICATION_BACKENDS]
        blind = [
            path
            for path, backend in zip(settings.AUTHENTICATION_BACKENDS, backends, strict=True)
            if backend is not None and not issubclass(backend, MembershipBackend)
        ]
        if not apps.is_installed("schemata.auth") or blind or not any(backends):
            errors.append(
                Error(
                    "Users are shared by every tenant, and "
                    + (
                        f"{', '.join(map(repr, blind))} let(s) any user log in on any tenant."
                        if blind and apps.is_installed("schemata.auth")
                        else "nothing limits them to the tenants that grant them access."
                    ),
                    hint="Add 'schemata.auth' to INSTALLED_APPS (a tenant app) and set "
                    "AUTHENTICATION_BACKENDS = ['schemata.auth.backends.MembershipBackend'].",
                    id="schemata.E014",
                )
            )
    if "admin" in shared:
        errors.append(
            Warning(
                "The admin app is shared: every tenant's admin lists every tenant's recent "
                "actions, with their object names.",
                hint="Remove 'admin' from SCHEMATA_SHARED_APPS: its log then lives in each "
                "schema and may point to shared users.",
                id="schemata.W002",
            )
        )
    if "authtoken" in shared:
        errors.append(
            Warning(
                "rest_framework.authtoken is shared: a token made on one tenant authenticates "
                "on every tenant.",
                hint="Remove 'authtoken' from SCHEMATA_SHARED_APPS, so each tenant keeps its "
                "own tokens.",
                id="schemata.W004",
            )
        )
    return errors


def _class_of(path: str) -> type | None:
    try:
        found = import_string(path)
    except ImportError:
        return None  # Django reports it when authenticating
    return found if isinstance(found, type) else None


@register(Tags.database)
def check_runtime_tenants(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    if DEFAULT_BASE not in (databases or ()) or not conf.RUNTIME_TENANTS:
        return []
    from schemata.registry import problems

    hints = {
        "E015": "A name or domain is declared once: remove it from the settings, or delete the "
        "tenant ('manage.py tenants remove NAME') or its domain.",
        "E016": "Register tenants and domains with schemata.create_tenant() and add_domain() "
        "(or 'manage.py tenants'), which validate them; fix or delete this one.",
    }
    return [
        Error(message, hint=hints[code], id=f"schemata.{code}") for code, message in problems()
    ]
