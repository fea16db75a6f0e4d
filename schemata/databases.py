"""The settings helper: one database alias per schema, built from ``SCHEMATA_DOMAINS``."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

#: Django's DEFAULT_DB_ALIAS, the one name the package uses for it: importing it from django.db
#: would load Django's database code into settings modules, which import this one.
DEFAULT_BASE = "default"
SCHEMA_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}", re.ASCII)
#: A host as Django accepts it in a request (django.http.request validates the same way),
#: lower-cased and without its port.
HOST_RE = re.compile(r"[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\]", re.ASCII)
#: Between a schema and public on schema paths; see schemata/guard.py.
GUARD_SCHEMA = "schemata_guard"
#: The keys of a SCHEMATA_DOMAINS entry the package reads; the others are the user's config.
ENTRY_KEYS = frozenset({"schema_name", "database"})
RESERVED_SCHEMAS = frozenset({"public", "information_schema", GUARD_SCHEMA})
#: Schema aliases whose derived settings are kept (least recently derived are dropped).
DERIVED_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Schema:
    """A tenant schema: its name, its database alias, its domains and the user's config."""

    name: str
    alias: str
    domains: tuple[str, ...]
    # Left out of ==/hash(): a Schema is identified by its name, and the user's values may be
    # unhashable.
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    base: str = DEFAULT_BASE


class SchemaMap(dict[str, Schema]):
    """The schemas of ``SCHEMATA_DOMAINS`` by name; a name it lacks is looked up among the
    tenants registered at run time (``schemata.registry``).

    ``in``, ``[]`` and ``get()`` answer for both; iterating gives the settings' schemas only
    (``schemata.registry.all_schemas()`` lists both).
    """

    def __init__(
        self, schemas: Mapping[str, Schema] | None = None, aliases: Iterable[str] = ()
    ) -> None:
        super().__init__(schemas or {})
        #: The user's own aliases: never a schema, and never worth a query.
        self.aliases = frozenset(aliases)

    def __missing__(self, name: str) -> Schema:
        schema = self._runtime(name)
        if schema is None:
            raise KeyError(name)
        return schema

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or self._runtime(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        schema = dict.get(self, name)
        if schema is None:
            schema = self._runtime(name)
        return default if schema is None else schema

    def find(self, name: str) -> Schema | None:
        """``get(name)``, from a copy of the run-time tenants no older than
        ``SCHEMATA_TENANT_REFRESH``."""
        return dict.get(self, name) or self._runtime(name, refresh=True)

    def _runtime(self, name: object, refresh: bool = False) -> Schema | None:
        if not isinstance(name, str) or name in self.aliases or not SCHEMA_NAME_RE.fullmatch(name):
            return None
        from schemata.registry import registry

        return registry.schema_named(name, refresh=refresh)


def normalize_host(host: str) -> str:
    """Lower-case ``host`` and drop its port and trailing dot, as a request's host is matched."""
    host = host.strip().lower()
    if host.startswith("["):  # bracketed IPv6 literal, possibly with a port
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


class SchemataDatabases(dict[str, dict[str, Any]]):
    """``DATABASES`` with one virtual alias per schema.

    The dict itself holds only the user's own aliases, so everything Django does by iterating
    ``DATABASES`` (request signals, ``ATOMIC_REQUESTS``, system checks, the test runner) costs
    the same with 10,000 schemas as with one. A schema alias answers ``in`` and ``[]``; its
    settings are derived from its base alias, follow changes to the base (the test runner
    renaming ``NAME``) and share no nested object with it.
    """

    schemas: SchemaMap
    domains: dict[str, Schema]
    atomic_requests: bool

    def __missing__(self, alias: str) -> dict[str, Any]:
        schema = self.schemas.get(alias)
        if schema is None:
            raise KeyError(alias)
        # Derived once and shared, as Django shares a listed alias's settings between the
        # connections of all threads; derived again when the base changed since (the test
        # runner renames NAME in place). Bounded: 10,000 schemas need not stay in memory.
        settings: dict[str, Any] = self._derive(schema)[0]
        return settings

    def search_path(self, alias: str) -> str:
        """The search path of schema alias ``alias``'s connections."""
        return self._derive(self.schemas[alias])[1]

    def settings_and_path(self, alias: str) -> tuple[dict[str, Any], str]:
        """``self[alias]`` and ``search_path(alias)`` of schema alias ``alias``, derived
        once (a connection handed out to another schema needs both)."""
        return self._derive(self.schemas[alias])

    def _derive(self, schema: Schema) -> tuple[dict[str, Any], str]:
        from schemata.conf import conf

        base = dict.__getitem__(self, schema.base)
        # What the derived settings depend on besides the base: compared on every lookup, as
        # settings can change without a signal reaching this object (another DATABASES was
        # active when they did).
        inputs = (conf.SCHEMA_DATABASE, conf.SHARED_APPS, conf.EXTENSION_SCHEMAS)
        derived = self.__dict__.setdefault("_derived", {})
        cached = derived.get(schema.alias)
        if cached is not None and cached[0] == base and cached[1] == inputs:
            return cached[2]  # type: ignore[no-any-return]
        result = (self.schema_settings(schema), search_path_of(schema.name))
        if len(derived) >= DERIVED_CACHE_SIZE:
            del derived[next(iter(derived))]
        derived[schema.alias] = (_copy(base), inputs, result)
        return result

    def __contains__(self, alias: object) -> bool:
        return dict.__contains__(self, alias) or alias in self.schemas

    def get(self, alias: str, default: Any = None) -> Any:
        try:
            return self[alias]
        except KeyError:
            return default

    def schema_settings(self, schema: Schema) -> dict[str, Any]:
        """Return a new copy of ``schema``'s base settings that opens on its search path."""
        from schemata.conf import conf

        settings: dict[str, Any] = _copy(dict.__getitem__(self, schema.base))
        options = settings.setdefault("OPTIONS", {})
        # Schema aliases share one pool per base database (schemata/pool.py), not Django's.
        options.pop("pool", None)
        per_schema_database = conf.SCHEMA_DATABASE
        if per_schema_database:
            # A database per schema (PgBouncer, whose connect_query sets the path).
            settings["NAME"] = per_schema_database.format(schema=schema.name)
        # The search path is set (and verified) in one statement when a connection is opened
        # or moved (schemata/pool.py), not in the libpq options parameter: PgBouncer before
        # 1.20 refuses that, or drops it.
        options["application_name"] = application_name(options, schema.name)
        # Django never reads this for schema aliases (it walks only the listed aliases), but
        # third-party code does: DRF's set_rollback() marks a handled error for rollback only on
        # connections that say ATOMIC_REQUESTS and are in an atomic block.
        settings["ATOMIC_REQUESTS"] = self.atomic_requests
        return settings


def bases(databases: SchemataDatabases, schemas: Iterable[Schema] = ()) -> list[str]:
    """The aliases of the servers that hold tenant schemas: ``default``, then those the
    schemas of the settings (and ``schemas``) name, in ``DATABASES`` order."""
    named = {schema.base for schema in (*dict.values(databases.schemas), *schemas)}
    return [alias for alias in dict.keys(databases) if alias == DEFAULT_BASE or alias in named]


def _copy(value: Any) -> Any:
    """A deep copy of plain settings: new dicts and lists, the rest shared.

    ``copy.deepcopy`` costs tens of microseconds per alias lookup, on every request.
    """
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def search_path_of(schema: str) -> str:
    """The search path of ``schema``'s connections, as ``SET search_path`` takes it."""
    from schemata.conf import conf

    # public only when shared apps need it, and then behind the guard, which stops tenant
    # table names that the schema does not resolve.
    shared = [GUARD_SCHEMA, "public"] if conf.SHARED_APPS else []
    return ",".join([schema, *shared, *conf.EXTENSION_SCHEMAS])


def application_name(options: Mapping[str, Any], schema: str) -> str:
    """The ``application_name`` of a schema's connections: the base's (or "schemata"), then
    the schema, so operators (and ``manage_schemata --drop``) can tell them apart."""
    # PostgreSQL keeps 63 bytes of it.
    return f"{options.get('application_name') or 'schemata'}:{schema}"[:63]


def expand_databases(
    databases: Mapping[str, Mapping[str, Any]], domains: Mapping[str, Any]
) -> SchemataDatabases:
    """Return ``databases`` plus one alias per schema named in ``domains`` (``SCHEMATA_DOMAINS``).

    Raises ``ImproperlyConfigured`` naming the domain for any invalid entry. Reads no model
    and opens no connection, so it is safe to call in a settings module.
    """
    if DEFAULT_BASE not in databases:
        raise ImproperlyConfigured("expand_databases() needs a 'default' entry in DATABASES.")
    if not isinstance(domains, Mapping):
        raise ImproperlyConfigured(
            f"SCHEMATA_DOMAINS must be a dict of domain -> {{'schema_name': ...}}, "
            f"not {type(domains).__name__}."
        )
    result = SchemataDatabases(
        {alias: copy.deepcopy(dict(settings)) for alias, settings in databases.items()}
    )
    # ATOMIC_REQUESTS on every alias would open a transaction on each of them per request;
    # SchemataMiddleware gives the guarantee on the request's schema alias instead. The
    # schema aliases of every server follow default's setting: one rule for all requests.
    result.atomic_requests = bool(result[DEFAULT_BASE].get("ATOMIC_REQUESTS", False))

    by_name: dict[str, tuple[list[str], Mapping[str, Any], str]] = {}
    host_to_name: dict[str, str] = {}
    seen: dict[str, str] = {}
    for domain, entry in domains.items():
        host = _check_domain(domain, seen)
        name = _check_entry(domain, entry)
        if dict.__contains__(result, name):
            raise ImproperlyConfigured(
                f"SCHEMATA_DOMAINS[{domain!r}]: schema {name!r} would be the database alias "
                f"{name!r}, which DATABASES already defines. Rename the schema or that alias."
            )
        base = _check_base(domain, entry, result)
        listed = by_name.setdefault(name, ([], entry, base))
        if listed[2] != base:
            raise ImproperlyConfigured(
                f"SCHEMATA_DOMAINS[{domain!r}]: schema {name!r} is on database {base!r} here "
                f"and on {listed[2]!r} for {listed[0][0]!r}. A schema lives on one server."
            )
        seen[host] = domain
        host_to_name[host] = name
        listed[0].append(host)
    for base in {DEFAULT_BASE, *(base for _, _, base in by_name.values())}:
        result[base]["ATOMIC_REQUESTS"] = False

    result.schemas = SchemaMap(
        {
            name: Schema(
                name=name,
                alias=name,
                domains=tuple(hosts),
                config=MappingProxyType({k: v for k, v in entry.items() if k not in ENTRY_KEYS}),
                base=base,
            )
            for name, (hosts, entry, base) in by_name.items()
        },
        aliases=dict.keys(result),
    )
    result.domains = {host: result.schemas[name] for host, name in host_to_name.items()}
    return result


def _check_domain(domain: object, seen: Mapping[str, str]) -> str:
    if not isinstance(domain, str) or not domain.strip():
        raise ImproperlyConfigured(
            f"SCHEMATA_DOMAINS: every key must be a non-empty domain string, got {domain!r}."
        )
    problem = domain_problem(domain)
    if problem:
        raise ImproperlyConfigured(f"SCHEMATA_DOMAINS[{domain!r}]: {problem}")
    host = normalize_host(domain)
    if host in seen:
        raise ImproperlyConfigured(
            f"SCHEMATA_DOMAINS[{domain!r}]: same host as {seen[host]!r} once lower-cased "
            f"and stripped of port and trailing dot ({host!r}). List each host once."
        )
    return host


def domain_problem(domain: str) -> str | None:
    """Say why no request could have the host ``domain``, or return ``None`` when one can."""
    if any(c.isspace() or c in "/@" for c in domain.strip()):
        return "a domain is a host name such as 'alpha.example.com'."
    host = normalize_host(domain)
    if HOST_RE.fullmatch(host):
        return None
    if not host.isascii():
        try:
            ascii_form = host.encode("idna").decode("ascii")
        except UnicodeError:
            ascii_form = None
        if ascii_form:
            return f"browsers send this host as {ascii_form!r} (its IDNA form); list that instead."
    return (
        f"{host!r} is not a valid host name, so no request could ever have it (Django "
        f"refuses such a Host header before any middleware)."
    )


def _check_base(domain: str, entry: Mapping[str, Any], databases: dict[str, Any]) -> str:
    base = entry.get("database", DEFAULT_BASE)
    problem = base_problem(base, databases)
    if problem:
        raise ImproperlyConfigured(f"SCHEMATA_DOMAINS[{domain!r}]['database']: {problem}")
    return str(base)


def base_problem(base: object, databases: dict[str, Any]) -> str | None:
    """Say why ``base`` cannot hold tenant schemas, or return ``None`` when it can (its
    engine is checked by ``schemata.E006``)."""
    if not isinstance(base, str) or not dict.__contains__(databases, base):
        known = ", ".join(repr(alias) for alias in dict.keys(databases))
        return f"{base!r} is not an alias of DATABASES (which has {known})."
    return None


def _check_entry(domain: str, entry: object) -> str:
    if not isinstance(entry, Mapping) or "schema_name" not in entry:
        raise ImproperlyConfigured(
            f"SCHEMATA_DOMAINS[{domain!r}] must be a dict with a 'schema_name' key."
        )
    name = entry["schema_name"]
    if not isinstance(name, str):
        raise ImproperlyConfigured(
            f"SCHEMATA_DOMAINS[{domain!r}]['schema_name'] must be a string, "
            f"not {type(name).__name__}."
        )
    problem = schema_name_problem(name)
    if problem:
        raise ImproperlyConfigured(f"SCHEMATA_DOMAINS[{domain!r}]: {problem}")
    return name


def schema_name_problem(name: str) -> str | None:
    """Say why ``name`` cannot be a tenant schema, or return ``None`` when it can."""
    if name in RESERVED_SCHEMAS:
        return f"schema name {name!r} is reserved by PostgreSQL."
    if name.startswith("pg_"):
        return f"schema name {name!r} starts with 'pg_', which PostgreSQL reserves."
    if not SCHEMA_NAME_RE.fullmatch(name):
        # Anything else could be folded, truncated at 63 bytes, or split by the server when it
        # parses the libpq options string, and so reach another schema or inject settings.
        return (
            f"schema name {name!r} is invalid: use 1 to 63 lower-case ASCII letters, digits "
            f"and underscores, not starting with a digit."
        )
    return None
