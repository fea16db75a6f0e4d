from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.databases import DEFAULT_BASE
from schemata.moving import PUBLIC, MoveRefused, move_apps
from schemata.registry import all_schemas


class Command(BaseCommand):
    help = (
        "Move apps' tables (with their data, indexes, constraints and sequences) from one "
        "schema to another, public included, and record their migrations in the target. "
        "Creates the target schema if needed. One transaction; refused, changing nothing, "
        "when the target already has one of the tables or a table would be left pointing to "
        "another schema's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "app_labels",
            nargs="+",
            metavar="app_label",
            help="The apps whose tables move (together: tables with foreign keys between them).",
        )
        parser.add_argument(
            "--from",
            dest="source",
            default=PUBLIC,
            metavar="SCHEMA",
            help="Where they are (default: public).",
        )
        parser.add_argument(
            "--to", dest="target", required=True, metavar="SCHEMA", help="Where they go."
        )

    def handle(
        self, *args: Any, app_labels: list[str], source: str, target: str, **options: Any
    ) -> None:
        for label in app_labels:
            try:
                apps.get_app_config(label)
            except LookupError as exc:
                raise CommandError(str(exc)) from exc
        known = all_schemas()
        for name in (source, target):
            if name != PUBLIC and name not in known:
                raise CommandError(
                    f"Unknown schema {name!r}: use public or a schema of SCHEMATA_DOMAINS."
                )
        if source == target:
            raise CommandError("--from and --to name the same schema.")
        # Within one server: public is the one of the tenant schema's server.
        servers = {known[name].base for name in (source, target) if name != PUBLIC}
        if len(servers) > 1:
            raise CommandError(
                f"{source!r} and {target!r} live on different servers "
                f"({known[source].base!r} and {known[target].base!r}): move_app moves tables "
                f"within one server. Move the tenant with move_schema first."
            )
        try:
            lines = move_apps(
                list(dict.fromkeys(app_labels)),
                source,
                target,
                using=servers.pop() if servers else DEFAULT_BASE,
            )
        except MoveRefused as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)
