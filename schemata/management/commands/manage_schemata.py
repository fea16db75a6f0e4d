from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from schemata.cloning import clone_schema
from schemata.conf import conf
from schemata.databases import application_name
from schemata.exceptions import SchemataError
from schemata.registry import all_schemas
from schemata.schemas import (
    create_schema,
    existing_schemas,
    extension_schemas,
    public_leftovers,
)


class Command(BaseCommand):
    help = (
        "Create every schema named in SCHEMATA_DOMAINS that the database lacks, and list "
        "schemas that no domain names (but not those an extension made). Never drops "
        "anything unless asked with --drop; safe to re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be created; change nothing."
        )
        parser.add_argument(
            "--drop",
            metavar="NAME",
            help="Drop the schema NAME and everything in it, instead of creating schemas. "
            "Refused for a schema that SCHEMATA_DOMAINS still names.",
        )
        parser.add_argument(
            "--clone-from",
            metavar="TEMPLATE",
            help="Create missing schemas as copies of the migrated schema TEMPLATE (structure "
            "and migration records) instead of empty, so they need no migration.",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation before dropping.",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool,
        drop: str | None,
        clone_from: str | None,
        interactive: bool,
        **options: Any,
    ) -> None:
        if drop is not None:
            self.drop(drop, dry_run=dry_run, interactive=interactive)
            return
        schemas = all_schemas()
        present = existing_schemas()
        for name in schemas:
            if name in present:
                state = "exists"
            elif dry_run:
                state = "would be created"
            elif clone_from:
                try:
                    clone_schema(clone_from, name)
                except SchemataError as exc:
                    raise CommandError(str(exc)) from exc
                state = f"created from {clone_from}"
            else:
                state = "created" if create_schema(name) else "exists"
            self.stdout.write(f"{name}: {state}")
        for name in sorted(present - set(schemas) - extension_schemas()):
            self.stdout.write(f"{name}: in the database, named by no domain (left alone)")
        if conf.SHARED_APPS:
            for table, label in public_leftovers().items():
                self.stdout.write(
                    f"public.{table}: table of the tenant app {label!r} left in public; a "
                    f"schema without its own would use it. Adopt public's tenant tables as a "
                    f"schema (adopt_schema SCHEMA), move this app (move_app {label} --to "
                    f"SCHEMA) or drop it."
                )

    def drop(self, name: str, *, dry_run: bool, interactive: bool) -> None:
        if dict.__contains__(conf.databases.schemas, name):
            raise CommandError(
                f"Refusing to drop {name!r}: SCHEMATA_DOMAINS still names it. Remove its "
                f"domains from the settings first."
            )
        if name in conf.databases.schemas:
            raise CommandError(
                f"Refusing to drop {name!r}: it is a tenant registered at run time. Remove it "
                f"with 'manage.py tenants remove {name}'."
            )
        if name not in existing_schemas():
            raise CommandError(f"There is no schema {name!r} to drop.")
        if dry_run:
            self.stdout.write(f"{name}: would be dropped")
            return
        if interactive:
            answer = input(
                f"This drops the schema {name!r} and every table and row in it.\n"
                f"Type 'yes' to continue, or anything else to cancel: "
            )
            if answer != "yes":
                raise CommandError("Drop cancelled: nothing was changed.")
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {connection.ops.quote_name(name)} CASCADE")
            # Connections still open on it (other processes, persistent connections) would
            # only fail later; end them now. Only the role's own sessions may be ended.
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename = current_user "
                "AND application_name = %s AND pid <> pg_backend_pid()",
                [application_name(connection.settings_dict["OPTIONS"], name)],
            )
            ended = cursor.fetchone()[0]
        self.stdout.write(
            f"{name}: dropped" + (f", {ended} open connections ended" if ended else "")
        )
