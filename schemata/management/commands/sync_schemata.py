from __future__ import annotations

from typing import Any

from schemata.management.commands.migrate_schemata import Command as MigrateSchemataCommand


class Command(MigrateSchemataCommand):
    help = (
        "migrate_schemata --run-syncdb: also create tables for apps without migrations, in "
        "every schema. Takes the same options as migrate_schemata."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        super().handle(*args, **{**options, "run_syncdb": True})
