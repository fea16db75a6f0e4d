from __future__ import annotations

import argparse
from typing import Any

from django.apps import apps
from django.core.management.base import CommandError, CommandParser
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db.migrations.loader import MigrationLoader

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE, bases
from schemata.guard import build_guard
from schemata.management.base import SchemaCommand
from schemata.migrator import (
    PUBLIC,
    applied_migrations,
    current_schemas,
    migrate_schema,
    public_job,
)
from schemata.statecache import check_django
from schemata.workers import FAILED, Outcome, Status

#: Options of this command that are not migrate's.
OWN_OPTIONS = {"schemas", "exclude", "parallel", "failfast", "list", "database", "public"}
#: BaseCommand options that migrate gets from this command unchanged.
PASSED_BASE_OPTIONS = {"verbosity", "traceback", "no_color", "force_color"}


class Command(SchemaCommand):
    help = (
        "Run migrate on every schema in SCHEMATA_DOMAINS (or those chosen with --schema), "
        "each with its schema active. Takes every option of migrate. With shared apps, a run "
        "that names no schema, exclusion or app migrates public first; otherwise public only "
        "with --public. Schemas that a previous run finished (post_migrate included) with every "
        "migration on disk are skipped without running migrate."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        MigrateCommand.add_arguments(self, parser)
        for action in parser._actions:
            if action.dest == "database":
                # Accepted only to be refused with a pointer to --schema: not offered.
                action.help = argparse.SUPPRESS
        self.add_schema_arguments(parser)
        parser.add_argument(
            "--public",
            action="store_true",
            help="Also migrate the base database (public) first, with the same options. "
            "Default: only with shared apps, and when no --schema, --exclude or app_label "
            "is given.",
        )
        parser.add_argument(
            "--list",
            action="store_true",
            help="Show each schema's migrations, as showmigrations does; apply nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["database"] != DEFAULT_BASE:
            raise CommandError(
                "migrate_schemata runs each schema on its own alias: choose schemas with "
                "--schema NAME instead of --database."
            )
        names = self.select_schemas(options["schemas"], options["exclude"])
        # The schemas select_schemas() just read (run-time tenants included), not read again.
        schemas = conf.databases.schemas
        servers = bases(conf.databases, (schemas[name] for name in names))
        if not options.get("skip_checks"):
            # Checks once per server: not once per schema alias.
            self.check(databases=servers)
        verbosity = options["verbosity"]
        run = {
            "parallel": options["parallel"],
            "failfast": options["failfast"],
            "verbosity": verbosity,
        }
        if options["list"]:
            labels = [options["app_label"]] if options["app_label"] else []
            self.run_per_schema(
                "schemata.migrator.show_migrations",
                names,
                {"app_label": labels, "verbosity": verbosity, "skip_checks": True},
                **run,
            )
            return

        check_django()
        with_public = self.public_wanted(options)
        migrate_options = {
            key: value
            for key, value in options.items()
            if key not in OWN_OPTIONS and (key in PASSED_BASE_OPTIONS or key in _migrate_dests())
        }
        migrate_options["skip_checks"] = True
        if options["parallel"] > 1:
            migrate_options["interactive"] = False  # workers have no terminal to ask on
        read_only = options["plan"] or options["check_unapplied"]
        if not read_only:
            self.create_missing(names, verbosity)

        skip_current = not (
            options["app_label"] or options["run_syncdb"] or options["prune"] or options["plan"]
        )
        for base in servers:
            if with_public:
                self.migrate_public(base, migrate_options, skip_current)
            elif conf.SHARED_APPS and not read_only:
                self.refuse_behind_public(base)
                build_guard(base)  # the tenant models may have changed since
        done: list[Outcome] = []
        if skip_current:
            current = current_schemas(names)
            done = [Outcome(name, Status.UP_TO_DATE) for name in names if name in current]
            names = [name for name in names if name not in current]
        self.run_per_schema(
            "schemata.migrator.migrate_schema",
            names,
            migrate_options,
            **run,
            done=done,
            finished="schemata.migrator.finished_schemas",
            # What --plan prints is what was asked for; the migrations applied are not.
            quiet=not read_only,
        )

    def public_wanted(self, options: dict[str, Any]) -> bool:
        """Whether this run migrates public; refuse a target that makes no sense there."""
        label = options["app_label"]
        if label:
            try:
                apps.get_app_config(label)
            except LookupError:
                raise CommandError(f"No installed app with label {label!r}.") from None
            if label in conf.SHARED_APPS:
                raise CommandError(
                    f"{label!r} is a shared app: its tables are in public only. Migrate it "
                    f"with 'manage.py migrate {label} ...'; migrate_schemata then records its "
                    f"migrations in the schemas."
                )
            if options["public"]:
                raise CommandError(
                    "An app_label or migration target applies to the schemas only: migrate "
                    "public on its own ('manage.py migrate'), or use --public without one."
                )
            return False
        if options["public"]:
            return True
        return bool(conf.SHARED_APPS) and not (options["schemas"] or options["exclude"])

    def refuse_behind_public(self, base: str) -> None:
        """Stop before the schemas record shared migrations that public does not have."""
        nodes = MigrationLoader(None, ignore_no_migrations=True).graph.nodes
        applied = applied_migrations([PUBLIC], using=base).get(PUBLIC, set())
        missing = sorted(
            f"{app}.{name}"
            for app, name in nodes
            if app in conf.SHARED_APPS and (app, name) not in applied
        )
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise CommandError(
                f"{public_job(base)} lacks {len(missing)} "
                f"migration{'s' if len(missing) > 1 else ''} of shared apps ({shown}): the "
                f"schemas would record them as applied before public has them. Add --public "
                f"to migrate public first, or run 'manage.py migrate --database {base}'."
            )

    def migrate_public(self, base: str, options: dict[str, Any], skip_current: bool) -> None:
        """Migrate a server's public first: schema tables may refer to shared ones."""
        job = public_job(base)
        if skip_current and current_schemas([job]):
            build_guard(base)  # migrate would have, after its post_migrate
            return
        outcome = migrate_schema(job, options)
        for line in outcome.lines:
            self.stdout.write(f"[{job}] {line}")
        if outcome.status == FAILED:
            raise CommandError(
                f"Migrating {job} failed, so no schema was migrated: {outcome.error}"
            )


def _migrate_dests() -> set[str]:
    parser = MigrateCommand().create_parser("manage.py", "migrate")
    return {action.dest for action in parser._actions}
