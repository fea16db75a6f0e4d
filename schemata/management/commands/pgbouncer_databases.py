from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, search_path_of
from schemata.registry import all_schemas

#: Database names PgBouncer's ini parser takes as they are.
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
#: Connection string values that need no quotes.
_PLAIN_RE = re.compile(r"[A-Za-z0-9_./:-]+")


class Command(BaseCommand):
    help = (
        "Print PgBouncer's [databases] section: one database per schema, named by "
        "SCHEMATA_SCHEMA_DATABASE, whose connect_query sets the schema's search path, and one "
        "for the base database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_BASE,
            metavar="ALIAS",
            help="The base alias whose schemas to list (default: 'default').",
        )
        parser.add_argument(
            "--pool-size",
            type=int,
            metavar="N",
            help="Server connections PgBouncer keeps per schema (pool_size); default: its "
            "default_pool_size.",
        )
        parser.add_argument(
            "--host",
            metavar="HOST",
            help="The PostgreSQL server's host or unix socket directory (default: the base "
            "alias's HOST, which may be PgBouncer's own once DATABASES points at it).",
        )
        parser.add_argument(
            "--port",
            type=int,
            metavar="PORT",
            help="The PostgreSQL server's port (default: the base alias's PORT).",
        )

    def handle(
        self,
        *args: Any,
        database: str,
        pool_size: int | None,
        host: str | None,
        port: int | None,
        **options: Any,
    ) -> None:
        template = conf.SCHEMA_DATABASE
        if not template:
            raise CommandError(
                "SCHEMATA_SCHEMA_DATABASE is not set: set it to the name of each schema's "
                "PgBouncer database, e.g. SCHEMATA_SCHEMA_DATABASE = 'app_{schema}', so that "
                "schema aliases connect to them."
            )
        databases = conf.databases
        if not dict.__contains__(databases, database):
            raise CommandError(f"Unknown database alias {database!r}: name a DATABASES entry.")
        if pool_size is not None and pool_size < 1:
            raise CommandError("--pool-size must be at least 1.")
        if port is not None and not 0 < port < 65536:
            raise CommandError("--port must be between 1 and 65535.")
        base = dict.__getitem__(databases, database)
        target = _server(base, host, port)
        entries = {str(base["NAME"]): target}
        for schema in all_schemas().values():
            if schema.base != database:
                continue
            name = _entry_name(template, schema.name)
            if name in entries:
                raise CommandError(
                    f"SCHEMATA_SCHEMA_DATABASE = {template!r} gives schema {schema.name!r} the "
                    f"database name {name!r}, already taken: put '{{schema}}' in it, and keep "
                    f"it apart from the base database's NAME."
                )
            query = f"SELECT set_config('search_path', '{search_path_of(schema.name)}', false)"
            size = "" if pool_size is None else f" pool_size={pool_size}"
            entries[name] = f"{target}{size} connect_query={_value(query)}"
        self.stdout.write("[databases]")
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"; One database per schema of DATABASES[{database!r}]; its connect_query sets "
                f"the search path.\n"
                f"; pool_size caps each schema's server connections; in [pgbouncer], "
                f"max_user_connections\n"
                f"; caps those of one user in all of them together (max_db_connections: each "
                f"one's).\n"
                f"; Use pool_mode = transaction, or in session mode set server_reset_query = "
                f"DEALLOCATE ALL:\n"
                f"; DISCARD ALL, its default, resets the search path."
            )
        for name, entry in entries.items():
            self.stdout.write(f"{name} = {entry}")


def _server(base: dict[str, Any], host: str | None, port: int | None) -> str:
    """The part of an entry that points PgBouncer at the real server and database."""
    # PgBouncer's host= takes a unix socket directory as well, as libpq's does.
    host = host if host is not None else str(base.get("HOST") or "")
    port_text = str(port if port is not None else base.get("PORT") or "")
    pairs = [("host", host), ("port", port_text), ("dbname", str(base["NAME"]))]
    return " ".join(f"{key}={_value(value)}" for key, value in pairs if value)


def _entry_name(template: str, schema: str) -> str:
    try:
        name = template.format(schema=schema)
    except (KeyError, IndexError, ValueError) as exc:
        raise CommandError(
            f"SCHEMATA_SCHEMA_DATABASE = {template!r} is not a template with '{{schema}}' "
            f"only: {exc!r}."
        ) from exc
    if not _NAME_RE.fullmatch(name):
        raise CommandError(
            f"SCHEMATA_SCHEMA_DATABASE = {template!r} gives schema {schema!r} the database "
            f"name {name!r}: use letters, digits, '_', '.' and '-' only."
        )
    return name


def _value(value: str) -> str:
    """``value`` as PgBouncer's connection string parser reads it: quoted when needed."""
    if _PLAIN_RE.fullmatch(value):
        return value
    return "'" + value.replace("'", "''") + "'"
