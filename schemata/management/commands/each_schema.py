from __future__ import annotations

import argparse
from typing import Any

from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import CommandError, CommandParser
from django.db import connections

from schemata.management.base import SchemaCommand
from schemata.state import override
from schemata.workers import Outcome

#: Replaced by the schema's name in COMMAND's arguments, e.g. ``-o dump-{schema}.json``.
PLACEHOLDER = "{schema}"


class Command(SchemaCommand):
    help = (
        "Run a management command once per schema, with that schema active and, when the "
        "command has a --database option, on the schema's alias. Options of each_schema go "
        "before COMMAND; everything after it goes to COMMAND, with {schema} replaced by the "
        "schema's name. With one schema (and no --parallel) the command runs as it would on "
        "its own: its output unprefixed, its prompts and shells on this terminal."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        self.add_schema_arguments(parser)
        parser.add_argument("command_name", metavar="COMMAND", help="The command to run.")
        parser.add_argument(
            "command_args", nargs=argparse.REMAINDER, metavar="ARGS", help="Its arguments."
        )

    def handle(
        self, *args: Any, command_name: str, command_args: list[str], **options: Any
    ) -> None:
        app_name = get_commands().get(command_name)
        if app_name is None:
            raise CommandError(f"Unknown command: {command_name!r}.")
        if command_name == "each_schema":
            raise CommandError("each_schema cannot run itself.")
        parser = load_command_class(app_name, command_name).create_parser(
            "manage.py", command_name
        )
        takes_database = any(action.dest == "database" for action in parser._actions)
        chooses_database = any(arg.split("=")[0] == "--database" for arg in command_args)
        names = self.select_schemas(options["schemas"], options["exclude"])
        job = {
            "command": command_name,
            "args": command_args,
            "database": takes_database and not chooses_database,
        }
        if len(names) == 1 and options["parallel"] == 1:
            run_alone(names[0], job, stdout=self.stdout._out, stderr=self.stderr._out)
            return
        self.run_per_schema(
            "schemata.management.commands.each_schema.run_in_schema",
            names,
            job,
            parallel=options["parallel"],
            failfast=options["failfast"],
            verbosity=options["verbosity"],
        )


def _for(schema: str, job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "args": [arg.replace(PLACEHOLDER, schema) for arg in job["args"]]}


def run_in_schema(schema: str, job: dict[str, Any]) -> Outcome:
    """The job of one schema: COMMAND with ``{schema}`` in its arguments replaced (and the
    schema's alias as ``database`` when the command takes one and none was given)."""
    from schemata.migrator import call_in_schema

    job = _for(schema, job)
    kwargs = {"database": schema} if job["database"] else {}
    return call_in_schema(schema, job["command"], job["args"], kwargs)


def run_alone(schema: str, job: dict[str, Any], **streams: Any) -> None:
    """Run COMMAND for one schema on this command's own output, input and terminal."""
    job = _for(schema, job)
    kwargs = {"database": schema} if job["database"] else {}
    try:
        with override(schema):
            call_command(job["command"], *job["args"], **kwargs, **streams)
    finally:
        connections[schema].close()
