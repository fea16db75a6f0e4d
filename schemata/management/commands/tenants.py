from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, Schema
from schemata.exceptions import SchemataError
from schemata.registry import registry
from schemata.tenants import add_domain, create_tenant, delete_tenant, remove_domain


class Command(BaseCommand):
    help = (
        "List, add and remove tenants registered at run time (SCHEMATA_RUNTIME_TENANTS); "
        "every process serves a change within SCHEMATA_TENANT_REFRESH seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        actions.add_parser("list", help="Every tenant: settings' ones, then run-time ones.")
        add = actions.add_parser("add", help="Create a tenant: its schema and its domains.")
        add.add_argument("name", help="The schema name.")
        add.add_argument("domains", nargs="+", metavar="DOMAIN", help="Hosts that serve it.")
        add.add_argument(
            "--template",
            metavar="SCHEMA",
            help="Copy this migrated schema instead of running every migration.",
        )
        add.add_argument(
            "--database",
            default=DEFAULT_BASE,
            metavar="ALIAS",
            help="The DATABASES alias of the server to create it on (default: default).",
        )
        add.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="A config value (request.schema.config), JSON or a plain string; repeatable.",
        )
        remove = actions.add_parser("remove", help="Delete a tenant and drop its schema.")
        remove.add_argument("name", help="The schema name.")
        remove.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation before dropping.",
        )
        add_domain_parser = actions.add_parser("add-domain", help="Serve a tenant at a host too.")
        add_domain_parser.add_argument("name", help="The schema name.")
        add_domain_parser.add_argument("domain", help="The host.")
        remove_domain_parser = actions.add_parser(
            "remove-domain", help="Stop serving a host (not a tenant's last)."
        )
        remove_domain_parser.add_argument("domain", help="The host.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "list":
                self.list()
            elif action == "add":
                config = dict(_pair(item) for item in options["set"])
                schema = create_tenant(
                    options["domains"],
                    options["name"],
                    template=options["template"],
                    database=options["database"],
                    **config,
                )
                self.stdout.write(f"{schema.name}: created, served at {', '.join(schema.domains)}")
            elif action == "remove":
                self.remove(options["name"], interactive=options["interactive"])
            elif action == "add-domain":
                schema = add_domain(options["name"], options["domain"])
                self.stdout.write(f"{schema.name}: served at {', '.join(schema.domains)}")
            else:
                schema = remove_domain(options["domain"])
                self.stdout.write(f"{schema.name}: served at {', '.join(schema.domains)}")
        except SchemataError as exc:
            raise CommandError(str(exc)) from exc

    def list(self) -> None:
        for schema in conf.databases.schemas.values():
            self.stdout.write(
                f"{schema.name} (settings{_on(schema)}): {', '.join(schema.domains)}"
            )
        for schema in registry.schemas().values():
            where = _on(schema)
            self.stdout.write(
                f"{schema.name}{f' ({where[2:]})' if where else ''}: {', '.join(schema.domains)}"
            )

    def remove(self, name: str, *, interactive: bool) -> None:
        if interactive:
            answer = input(
                f"This deletes the tenant {name!r} and drops its schema with every table and "
                f"row in it.\nType 'yes' to continue, or anything else to cancel: "
            )
            if answer != "yes":
                raise CommandError("Removal cancelled: nothing was changed.")
        delete_tenant(name)
        self.stdout.write(f"{name}: removed, schema dropped")


def _on(schema: Schema) -> str:
    """Where ``schema`` lives, when not on ``default``."""
    return "" if schema.base == DEFAULT_BASE else f", database {schema.base!r}"


def _pair(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CommandError(f"--set takes KEY=VALUE, not {item!r}.")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value
