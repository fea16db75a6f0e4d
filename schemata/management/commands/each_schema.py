from __future__ import annotations

import argparse
from typing import Any

from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError, CommandParser

from schemata.management.base import SchemaCommand


class Command(SchemaCommand):
    help = (
        "Run a management command once per schema, with that schema active and, when the "
        "command has a --database option, on the schema's alias. Options of each_schema go "
        "before COMMAND; everything after it goes to COMMAND."
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
        self.run_per_schema(
            "schemata.migrator.run_command",
            names,
            {
                "command": command_name,
                "args": command_args,
                "database": takes_database and not chooses_database,
            },
            parallel=options["parallel"],
            failfast=options["failfast"],
            verbosity=options["verbosity"],
        )
