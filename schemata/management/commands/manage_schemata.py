from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from schemata.cloning import clone_schema
from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, base_problem, bases
from schemata.exceptions import SchemataError
from schemata.registry import all_schemas
from schemata.schemas import (
    create_schema,
    end_sessions,
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
            "--database",
            default=DEFAULT_BASE,
            metavar="ALIAS",
            help="With --drop: the DATABASES alias of the server to drop it on (default: "
            "default).",
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
        database: str,
        **options: Any,
    ) -> None:
        if drop is not None:
            self.drop(drop, database, dry_run=dry_run, interactive=interactive)
            return
        schemas = all_schemas()
        template = schemas.get(clone_from) if clone_from else None
        for base in bases(conf.databases, schemas.values()):
            # Said only when the project has several servers: one would always be 'default'.
            on = "" if base == DEFAULT_BASE else f" (database {base!r})"
            present = existing_schemas(base)
            members = [name for name, schema in schemas.items() if schema.base == base]
            for name in members:
                if name in present:
                    state = "exists"
                elif dry_run:
                    state = "would be created"
                elif clone_from:
                    if template is not None and template.base != base:
                        raise CommandError(
                            f"Cannot clone {clone_from!r} into {name!r}: {name!r} lives on "
                            f"{base!r} and {clone_from!r} on {template.base!r}; a clone is "
                            f"made within one server. Use a template on {base!r}."
                        )
                    try:
                        clone_schema(clone_from, name, using=base)
                    except SchemataError as exc:
                        raise CommandError(str(exc)) from exc
                    state = f"created from {clone_from}"
                else:
                    state = "created" if create_schema(name, base) else "exists"
                self.stdout.write(f"{name}: {state}{on}")
            for name in sorted(present - set(members) - extension_schemas(base)):
                self.stdout.write(f"{name}{on}: in the database, named by no domain (left alone)")
            if conf.SHARED_APPS:
                for table, label in public_leftovers(base).items():
                    self.stdout.write(
                        f"public.{table}{on}: table of the tenant app {label!r} left in public; "
                        f"a schema without its own would use it. Adopt public's tenant tables "
                        f"as a schema (adopt_schema SCHEMA), move this app (move_app {label} "
                        f"--to SCHEMA) or drop it."
                    )

    def drop(self, name: str, database: str, *, dry_run: bool, interactive: bool) -> None:
        declared = dict.get(conf.databases.schemas, name)
        if declared is not None and declared.base == database:
            raise CommandError(
                f"Refusing to drop {name!r}: SCHEMATA_DOMAINS still names it. Remove its "
                f"domains from the settings first."
            )
        runtime = conf.databases.schemas.get(name)
        if runtime is not None and runtime.base == database:
            raise CommandError(
                f"Refusing to drop {name!r}: it is a tenant registered at run time. Remove it "
                f"with 'manage.py tenants remove {name}'."
            )
        problem = base_problem(database, conf.databases)
        if problem:
            raise CommandError(f"--database: {problem}")
        if name not in existing_schemas(database):
            where = "" if database == DEFAULT_BASE else f" on {database!r}"
            raise CommandError(f"There is no schema {name!r} to drop{where}.")
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
        connection = connections[database]
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA {connection.ops.quote_name(name)} CASCADE")
            # Connections still open on it (other processes, persistent connections) would
            # only fail later; end them now.
            ended = end_sessions(cursor, name)
        self.stdout.write(
            f"{name}: dropped" + (f", {ended} open connections ended" if ended else "")
        )
