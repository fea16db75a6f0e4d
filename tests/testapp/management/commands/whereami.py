from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

import schemata
from tests.testapp.models import Note


class Command(BaseCommand):
    help = "Print the active schema and how many notes it has (a command with no --database)."

    def handle(self, *args: Any, **options: Any) -> None:
        schema = schemata.get_current_schema()
        self.stdout.write(f"{schema.name if schema else None}: {Note.objects.count()} notes")
