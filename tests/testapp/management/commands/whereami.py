from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import schemata
from tests.testapp.models import Note


class Command(BaseCommand):
    help = "Print the active schema and how many notes it has (a command with no --database)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--exit", type=int, help="Then exit with this status.")

    def handle(self, *args: Any, exit: int | None, **options: Any) -> None:
        schema = schemata.get_current_schema()
        self.stdout.write(f"{schema.name if schema else None}: {Note.objects.count()} notes")
        if exit is not None:
            sys.exit(exit)
