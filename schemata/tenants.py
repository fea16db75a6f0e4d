"""Create and remove tenants while the site serves: no settings change, no restart.

Each change is one transaction on the base database that also bumps the registry's revision,
so every process serves it within ``SCHEMATA_TENANT_REFRESH`` seconds (a new host on its first
request). A tenant made here is a ``Schema`` like those of ``SCHEMATA_DOMAINS``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, connections, transaction

from schemata.conf import conf
from schemata.connections import release_idle_connections
from schemata.databases import (
    DEFAULT_BASE,
    Schema,
    base_problem,
    domain_problem,
    normalize_host,
    schema_name_problem,
)
from schemata.exceptions import SchemataError, UnknownSchema
from schemata.registry import BUMP_SQL, all_schemas, registry
from schemata.schemas import end_sessions


def create_tenant(
    domain: str | Iterable[str],
    schema_name: str,
    template: str | None = None,
    *,
    database: str = DEFAULT_BASE,
    **config: Any,
) -> Schema:
    """Create the schema ``schema_name`` (a copy of ``template``, else migrated) on the server
    of the ``DATABASES`` alias ``database``, serve it at ``domain`` (one host or several) with
    ``config``, and return its ``Schema``.

    All or nothing: when any step fails, neither the schema nor the tenant is left behind.
    """
    from schemata.models import Domain, Tenant

    _enabled()

    hosts = _hosts([domain] if isinstance(domain, str) else list(domain))
    problem = base_problem(database, conf.databases)
    if problem:
        raise SchemataError(f"database={database!r}: {problem}")
    name = _free_name(schema_name, database)
    for host in hosts:
        _check_free_host(host)
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise SchemataError(f"The config of {name!r} must be JSON: {exc}.") from exc
    if template is not None:
        source = all_schemas().get(template)
        if source is not None and source.base != database:
            raise SchemataError(
                f"The template {template!r} lives on {source.base!r}, not {database!r}: a clone "
                f"is made within one server. Use a template on {database!r}."
            )
    else:
        _create_migrated(name, database)
    try:
        with transaction.atomic(using=DEFAULT_BASE), transaction.atomic(using=database):
            if template is not None:
                from schemata.cloning import clone_schema

                clone_schema(template, name, using=database)
            tenant = Tenant.objects.using(DEFAULT_BASE).create(
                schema_name=name, database=database, config=config
            )
            Domain.objects.using(DEFAULT_BASE).bulk_create(
                [Domain(domain=host, tenant=tenant) for host in hosts]
            )
            _bump()
    except BaseException as exc:
        if template is None:  # the schema was made (and migrated) before this transaction
            _drop(name, database)
        if isinstance(exc, IntegrityError):
            raise SchemataError(
                f"Another process registered {name!r} or one of {', '.join(hosts)} meanwhile."
            ) from exc
        raise
    finally:
        registry.invalidate()
    return _registered(name)


def delete_tenant(schema_name: str) -> None:
    """Stop serving the run-time tenant ``schema_name`` and drop its schema with every row.

    One transaction: the tenant and its domains are removed, open connections on the schema
    (any process) are ended, and the schema is dropped. Other processes stop serving it within
    ``SCHEMATA_TENANT_REFRESH`` seconds; their requests for it fail until then.
    """
    from schemata.models import Tenant

    _enabled()

    if schema_name in dict.keys(conf.databases.schemas):
        raise SchemataError(
            f"{schema_name!r} is declared in SCHEMATA_DOMAINS: remove it there, then drop it "
            f"with 'manage.py manage_schemata --drop {schema_name}'."
        )
    # This thread's connections on it go back to the pool first, to be ended with the rest.
    release_idle_connections()
    try:
        with transaction.atomic(using=DEFAULT_BASE):
            tenant = Tenant.objects.using(DEFAULT_BASE).filter(schema_name=schema_name).first()
            if tenant is None:
                raise UnknownSchema(f"No tenant registered at run time is called {schema_name!r}.")
            tenant.delete()
            _bump()
            # On another server, the drop commits first: a tenant left registered without its
            # schema fails loudly and can be deleted again; the reverse would serve nothing.
            _drop(schema_name, tenant.database)
    finally:
        registry.invalidate()


def add_domain(schema_name: str, domain: str) -> Schema:
    """Serve the run-time tenant ``schema_name`` at ``domain`` too; return its ``Schema``."""
    from schemata.models import Domain, Tenant

    _enabled()

    (host,) = _hosts([domain])
    if host in conf.databases.domains:
        raise SchemataError(f"{host!r} is listed in SCHEMATA_DOMAINS already.")
    with _changing(f"{host!r} serves another tenant already."):
        tenant = Tenant.objects.using(DEFAULT_BASE).filter(schema_name=schema_name).first()
        if tenant is None:
            raise _not_runtime(schema_name)
        Domain.objects.using(DEFAULT_BASE).create(domain=host, tenant=tenant)
    return _registered(schema_name)


def remove_domain(domain: str) -> Schema:
    """Stop serving ``domain`` (a run-time tenant's, not its last); return the tenant."""
    from schemata.models import Domain

    _enabled()

    host = normalize_host(domain)
    if host in conf.databases.domains:
        raise SchemataError(f"{host!r} is listed in SCHEMATA_DOMAINS: remove it there.")
    with _changing(f"{host!r} changed meanwhile."):
        domains = Domain.objects.using(DEFAULT_BASE)
        row = domains.select_related("tenant").filter(domain=host).first()
        if row is None:
            raise SchemataError(f"No run-time tenant is served at {host!r}.")
        if not domains.filter(tenant=row.tenant).exclude(pk=row.pk).exists():
            raise SchemataError(
                f"{host!r} is the last domain of {row.tenant.schema_name!r}: add another first, "
                f"or delete the tenant."
            )
        row.delete()
    return _registered(row.tenant.schema_name)


@contextmanager
def _changing(clash: str) -> Iterator[None]:
    """A transaction that changes the registry and bumps its revision; a unique constraint
    violated (by another process, say) raises ``SchemataError(clash)``."""
    try:
        with transaction.atomic(using=DEFAULT_BASE):
            yield
            _bump()
    except IntegrityError as exc:
        raise SchemataError(clash) from exc
    finally:
        registry.invalidate()


def _enabled() -> None:
    if not conf.RUNTIME_TENANTS:
        raise SchemataError(
            "Tenants registered at run time are off: set SCHEMATA_RUNTIME_TENANTS = True."
        )


def _bump() -> None:
    with connections[DEFAULT_BASE].cursor() as cursor:
        cursor.execute(BUMP_SQL)


def _registered(name: str) -> Schema:
    registry.sync()
    schema = registry.schema_named(name)
    assert schema is not None, name
    return schema


def _not_runtime(name: str) -> SchemataError:
    if name in dict.keys(conf.databases.schemas):
        return SchemataError(f"{name!r} is declared in SCHEMATA_DOMAINS: change it there.")
    return UnknownSchema(f"No tenant registered at run time is called {name!r}.")


def _hosts(domains: list[Any]) -> list[str]:
    """Validate ``domains`` as ``SCHEMATA_DOMAINS`` keys are; return them as hosts."""
    if not domains:
        raise SchemataError("A tenant needs at least one domain.")
    hosts: list[str] = []
    for domain in domains:
        if not isinstance(domain, str) or not domain.strip():
            raise SchemataError(f"A domain must be a non-empty string, not {domain!r}.")
        problem = domain_problem(domain)
        if problem:
            raise SchemataError(f"{domain!r}: {problem}")
        host = normalize_host(domain)
        if host in hosts:
            raise SchemataError(f"{domain!r} is given twice ({host!r}).")
        hosts.append(host)
    return hosts


def _free_name(name: object, database: str) -> str:
    from schemata.models import Tenant

    if not isinstance(name, str):
        raise SchemataError(f"A schema name must be a string, not {type(name).__name__}.")
    problem = schema_name_problem(name)
    if problem:
        raise SchemataError(problem)
    databases = conf.databases
    if name in dict.keys(databases):
        raise SchemataError(f"{name!r} is a database alias in DATABASES: choose another name.")
    if name in dict.keys(databases.schemas):
        raise SchemataError(f"SCHEMATA_DOMAINS already has the schema {name!r}.")
    if Tenant.objects.using(DEFAULT_BASE).filter(schema_name=name).exists():
        raise SchemataError(f"A tenant called {name!r} exists already.")
    with connections[database].cursor() as cursor:
        cursor.execute("SELECT to_regnamespace(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            raise SchemataError(
                f"The schema {name!r} exists already (no tenant uses it): drop it with "
                f"'manage.py manage_schemata --drop {name}', or choose another name."
            )
    return name


def _check_free_host(host: str) -> None:
    from schemata.models import Domain

    if host in conf.databases.domains:
        raise SchemataError(f"{host!r} is listed in SCHEMATA_DOMAINS already.")
    taken = (
        Domain.objects.using(DEFAULT_BASE)
        .filter(domain=host)
        .values_list("tenant__schema_name", flat=True)
    )
    for owner in taken:
        raise SchemataError(f"{host!r} serves the tenant {owner!r} already.")


@contextmanager
def _provisional(name: str, database: str) -> Iterator[None]:
    """Let ``name`` be a schema alias in this process before it is registered."""
    registry.provisional[name] = Schema(name=name, alias=name, domains=(), base=database)
    try:
        yield
    finally:
        del registry.provisional[name]
        release_idle_connections()


def _create_migrated(name: str, database: str) -> None:
    from schemata.migrator import migrate_schema
    from schemata.workers import FAILED

    connection = connections[database]
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {connection.ops.quote_name(name)}")
    try:
        with _provisional(name, database):
            outcome = migrate_schema(name, {"verbosity": 0, "interactive": False})
        if outcome.status == FAILED:
            raise SchemataError(f"Migrating the new schema {name!r} failed: {outcome.error}")
    except BaseException:
        _drop(name, database)
        raise


def _drop(name: str, database: str) -> None:
    """End the connections open on ``name`` (any process of this role), then drop it."""
    connection = connections[database]
    quoted = connection.ops.quote_name(name)
    with connection.cursor() as cursor:
        end_sessions(cursor, name)
        cursor.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
