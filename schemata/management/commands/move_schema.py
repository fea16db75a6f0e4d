from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.databases import DEFAULT_BASE
from schemata.exceptions import SchemataError
from schemata.servers import move_schema


class Command(BaseCommand):
    help = (
        "Move a tenant's schema to another server (a DATABASES alias): copy it with pg_dump "
        "and pg_restore while its writes wait, check the copy, and rename the old one out of "
        "use. All or nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("schema", help="The schema to move.")
        parser.add_argument(
            "--to", dest="target", required=True, metavar="ALIAS", help="The server's alias."
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(
        self, *args: Any, schema: str, target: str, interactive: bool, **options: Any
    ) -> None:
        if interactive:
            answer = input(
                f"This copies {schema!r} to {target!r}; writes to it wait until the copy is "
                f"checked, then its old copy is renamed out of use.\n"
                f"Type 'yes' to continue, or anything else to cancel: "
            )
            if answer != "yes":
                raise CommandError("Move cancelled: nothing was changed.")
        try:
            moved = move_schema(schema, target)
        except SchemataError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{moved.schema}: copied from {moved.source!r} to {moved.target!r} "
            f"({moved.rows} rows); the old copy is {moved.old_copy!r} on {moved.source!r}."
        )
        if moved.registered:
            self.stdout.write(
                f"{moved.schema}: served from {moved.target!r} (every process within "
                f"SCHEMATA_TENANT_REFRESH seconds)."
            )
        else:
            self.stdout.write(
                f"Next: set 'database': {moved.target!r} in the SCHEMATA_DOMAINS entries of "
                f"{moved.schema!r} and deploy; its requests fail until then."
            )
        self.stdout.write(
            f"Once you no longer need it: manage.py manage_schemata --drop {moved.old_copy}"
            + (f" --database {moved.source}" if moved.source != DEFAULT_BASE else "")
        )
