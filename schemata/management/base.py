"""What the per-schema commands share: choosing schemas, running jobs, reporting."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from schemata.conf import conf
from schemata.exceptions import SchemataError
from schemata.progress import Progress
from schemata.registry import all_schemas
from schemata.schemas import create_schema, existing_schemas
from schemata.workers import FAILED, Outcome, Report, run_jobs


class SchemaCommand(BaseCommand):
    """A command that does its work once per selected schema."""

    def add_schema_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--schema",
            action="append",
            dest="schemas",
            metavar="NAME",
            help="Only this schema (repeatable). Default: every schema in SCHEMATA_DOMAINS.",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="NAME",
            help="Leave this schema out (repeatable).",
        )
        parser.add_argument(
            "--parallel",
            type=int,
            default=1,
            metavar="N",
            help="Run N worker processes, each reused for many schemas (default: 1, in process).",
        )
        parser.add_argument(
            "--failfast",
            action="store_true",
            help="Start no new schema once one has failed.",
        )

    def select_schemas(self, schemas: list[str] | None, exclude: list[str]) -> list[str]:
        """Return the chosen schema names in settings order, then the run-time tenants';
        unknown names are an error."""
        known = all_schemas()
        unknown = [name for name in [*(schemas or []), *exclude] if name not in known]
        if unknown:
            raise CommandError(
                f"Unknown schema{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                f"Schemas come from SCHEMATA_DOMAINS and the tenants registered at run time."
            )
        chosen = set(schemas) if schemas else set(known)
        return [name for name in known if name in chosen and name not in exclude]

    def create_missing(self, names: list[str], verbosity: int = 2) -> None:
        """Create the schemas among ``names`` that the database lacks, saying so: a line per
        schema at ``verbosity`` 2, their number at 1."""
        by_base: dict[str, list[str]] = {}
        for name in names:
            by_base.setdefault(conf.databases.schemas[name].base, []).append(name)
        created = 0
        for base, members in by_base.items():
            present = existing_schemas(base)
            for name in members:
                if name not in present and create_schema(name, base):
                    created += 1
                    if verbosity >= 2:
                        self.stdout.write(f"[{name}] schema created")
        if created and verbosity == 1:
            self.stdout.write(f"{created} schema{'s' if created > 1 else ''} created.")

    def run_per_schema(
        self,
        job: str,
        names: list[str],
        options: dict[str, Any],
        *,
        parallel: int,
        failfast: bool,
        verbosity: int,
        done: list[Outcome] | None = None,
        finished: str | None = None,
        quiet: bool = False,
    ) -> Report:
        """Run ``job`` for ``names``, print each schema's lines prefixed, the progress (see
        ``Progress``), then a summary.

        With ``quiet``, a schema's lines are printed at ``verbosity`` 2 only, or when it failed:
        10,000 schemas' ``migrate`` output would bury the failures and the progress.

        ``done`` are outcomes known without running the job (schemas already up to date);
        ``finished`` tells which schemas a dead worker process had completed (see run_jobs).
        Raises ``CommandError`` listing every failed schema, or saying the run was interrupted.
        """
        if parallel < 1:
            raise CommandError("--parallel must be at least 1.")
        known = Counter(outcome.status for outcome in done or [])
        total = len(names) + sum(known.values())
        progress = Progress(self.stdout, total, verbosity, known=sum(known.values()))

        def show(outcome: Outcome) -> None:
            failed = outcome.status == FAILED
            with progress.above():
                for line in outcome.lines if failed or verbosity >= 2 or not quiet else ():
                    self.stdout.write(f"[{outcome.schema}] {line}")
                if failed:
                    self.stdout.flush()
                    self.stderr.write(f"[{outcome.schema}] FAILED: {outcome.error}")
            progress.advance(failed)

        try:
            report = run_jobs(
                job,
                names,
                options,
                parallel=parallel,
                failfast=failfast,
                finished=finished,
                on_outcome=show,
            )
        except SchemataError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.finish()
        counts = known + report.counts
        ended = sum(counts.values())
        if verbosity >= 1:
            parts = [f"{counts[status]} {status}" for status in sorted(counts)]
            if ended < total:
                parts.append(f"{total - ended} not started")
            self.stdout.write(f"Summary: {', '.join(parts) or 'no schema selected'}.")
        if report.failed:
            listing = "\n".join(f"  {o.schema}: {o.error}" for o in report.failed)
            raise CommandError(
                f"{len(report.failed)} schema{'s' if len(report.failed) > 1 else ''} "
                f"failed:\n{listing}"
            )
        if report.interrupted:
            raise CommandError(
                f"Interrupted after {ended} of {total} schemas; run the command again to finish.",
                returncode=130,
            )
        return report
