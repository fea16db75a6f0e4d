from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from schemata.conf import conf
from schemata.schemas import create_schema, existing_schemas


class Command(BaseCommand):
    help = (
        "Create every schema named in SCHEMATA_DOMAINS that the database lacks, and list "
        "schemas that no domain names. Never drops anything; safe to re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be created; change nothing."
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        schemas = conf.databases.schemas
        present = existing_schemas()
        for name in schemas:
            if name in present:
                state = "exists"
            elif dry_run:
                state = "would be created"
            else:
                state = "created" if create_schema(name) else "exists"
            self.stdout.write(f"{name}: {state}")
        for name in sorted(present - set(schemas)):
            self.stdout.write(f"{name}: in the database, named by no domain (left alone)")
