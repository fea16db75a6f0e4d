from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.citus import CitusError, make_reference_tables, shared_tables
from schemata.databases import DEFAULT_BASE


class Command(BaseCommand):
    help = (
        "On Citus, make the tables of SCHEMATA_SHARED_APPS in public reference tables (copied "
        "to every node), so that tenant tables in distributed schemas can have foreign keys to "
        "them. 'migrate' does this by itself; this is for a database migrated before Citus. "
        "Safe to re-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            default=DEFAULT_BASE,
            help="The base database alias (default: 'default').",
        )

    def handle(self, *args: Any, database: str, **options: Any) -> None:
        if not shared_tables():
            raise CommandError("SCHEMATA_SHARED_APPS names no app with tables: nothing to do.")
        try:
            converted = make_reference_tables(database)
        except CitusError as exc:
            raise CommandError(str(exc)) from exc
        for table in converted:
            self.stdout.write(f"public.{table}: now a reference table")
        if not converted:
            self.stdout.write("Every shared table is a reference table already.")
