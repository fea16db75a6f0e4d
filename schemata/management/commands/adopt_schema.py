from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE
from schemata.moving import PUBLIC, MoveRefused, move_apps
from schemata.schemas import public_leftovers


class Command(BaseCommand):
    help = (
        "Make a project's existing data a tenant: move every tenant app's tables out of "
        "public (with their data, indexes, constraints and sequences) into the new or empty "
        "schema SCHEMA, and record there every migration public records. One transaction; "
        "refused, changing nothing, if a table would be lost, overwritten or left pointing "
        "to another schema's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("schema", metavar="SCHEMA", help="A schema of SCHEMATA_DOMAINS.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what would be moved and recorded, then roll it all back.",
        )

    def handle(self, *args: Any, schema: str, dry_run: bool, **options: Any) -> None:
        if schema not in conf.databases.schemas:
            raise CommandError(
                f"Unknown schema {schema!r}: add a domain for it to SCHEMATA_DOMAINS first."
            )
        labels = sorted(set(public_leftovers().values()))
        if not labels:
            raise CommandError("public has no table of a tenant app: nothing to adopt.")
        try:
            with transaction.atomic(using=DEFAULT_BASE):
                lines = move_apps(labels, PUBLIC, schema, adopt=True)
                transaction.set_rollback(dry_run, using=DEFAULT_BASE)
        except MoveRefused as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
