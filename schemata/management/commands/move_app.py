from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from schemata.conf import conf
from schemata.migrator import PUBLIC


class Command(BaseCommand):
    help = (
        "Move an app's tables (with their indexes, constraints and sequences, and their data) "
        "from one schema to another, public included, with ALTER TABLE ... SET SCHEMA, and "
        "record the app's migrations in the target. One transaction; refused when the target "
        "already has any of the tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("app_label", help="The app whose tables move.")
        parser.add_argument(
            "--from", dest="source", required=True, metavar="SCHEMA", help="Where they are."
        )
        parser.add_argument(
            "--to", dest="target", required=True, metavar="SCHEMA", help="Where they go."
        )

    def handle(self, *args: Any, app_label: str, source: str, target: str, **options: Any) -> None:
        try:
            app = apps.get_app_config(app_label)
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        known = {PUBLIC, *conf.databases.schemas}
        for name in (source, target):
            if name not in known:
                raise CommandError(f"Unknown schema {name!r}: use public or a schema name.")
        if source == target:
            raise CommandError("--from and --to name the same schema.")
        tables = sorted(
            {
                model._meta.db_table
                for model in app.get_models(include_auto_created=True)
                if model._meta.managed
            }
        )
        connection = connections[DEFAULT_DB_ALIAS]
        qn = connection.ops.quote_name
        with transaction.atomic(using=DEFAULT_DB_ALIAS), connection.cursor() as cursor:
            present = {name: _existing(cursor, name, tables) for name in (source, target)}
            if present[target]:
                raise CommandError(
                    f"{target} already has {', '.join(present[target])}: nothing was moved."
                )
            if not present[source]:
                raise CommandError(f"{source} has no table of {app_label!r}: nothing to move.")
            for table in present[source]:
                cursor.execute(f"ALTER TABLE {qn(source)}.{qn(table)} SET SCHEMA {qn(target)}")
                self.stdout.write(f"{source}.{table} -> {target}.{table}")
            # The target's records for the app become the source's: its tables now match them.
            cursor.execute(
                f"DELETE FROM {qn(target)}.django_migrations WHERE app = %s", [app_label]
            )
            cursor.execute(
                f"INSERT INTO {qn(target)}.django_migrations (app, name, applied) "
                f"SELECT app, name, applied FROM {qn(source)}.django_migrations WHERE app = %s",
                [app_label],
            )
            self.stdout.write(
                f"{target}.django_migrations: {cursor.rowcount} migrations of {app_label!r}"
            )


def _existing(cursor: Any, schema: str, tables: list[str]) -> list[str]:
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s) "
        "AND relname = ANY(%s) AND relkind IN ('r', 'p') ORDER BY relname",
        [schema, tables],
    )
    return [row[0] for row in cursor.fetchall()]
