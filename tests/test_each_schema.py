"""each_schema for one schema: raw output, a file per schema, a shell and dbshell in a schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

from tests.pgserver import find_bindir
from tests.test_commands_migrate import run

pytestmark = pytest.mark.django_db


def test_one_schemas_dump_is_plain_json() -> None:
    lines = run("each_schema", "--schema", "alpha", "dumpdata", "testapp", "--indent", "0")

    assert json.loads("\n".join(lines)) == []


def test_each_schema_writes_its_own_file(tmp_path: Path) -> None:
    target = str(tmp_path / "dump-{schema}.json")

    run(
        "each_schema", "--schema", "alpha", "--schema", "beta", "dumpdata", "testapp", "-o", target
    )

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "dump-alpha.json",
        "dump-beta.json",
    ]
    assert json.loads((tmp_path / "dump-beta.json").read_text()) == []


def test_a_shell_opens_in_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    run(
        "each_schema",
        "--schema",
        "beta",
        "shell",
        "--no-imports",
        "-c",
        "import schemata; print('in', schemata.get_current_schema().name)",
    )

    assert capsys.readouterr().out == "in beta\n"


def test_an_interactive_shell_reads_this_terminal(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url_of_test_database(),
    }
    code = "import schemata; print('in', schemata.get_current_schema().name)\n"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "each_schema",
            "--schema",
            "beta",
            "shell",
            "-i",
            "python",
        ],
        input=code,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
    )

    assert "in beta" in result.stdout, result.stderr


def test_psql_through_dbshell_resolves_the_schema(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url_of_test_database(),
        "PATH": f"{psql_dir()}:{os.environ['PATH']}",
    }

    result = subprocess.run(
        # argparse takes the first "--" for each_schema's own: the second reaches dbshell.
        [sys.executable, "-m", "django", "each_schema", "--schema", "beta", "dbshell", "--",
         "--", "-Atc", "SELECT current_schema()"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
    )  # fmt: skip

    assert result.stdout.strip() == "beta", result.stderr


def url_of_test_database() -> str:
    """DATABASE_URL, pointing at the test database of this session."""
    name = connections["default"].settings_dict["NAME"]
    return f"{os.environ['DATABASE_URL'].rsplit('/', 1)[0]}/{name}"


def psql_dir() -> str:
    return str(find_bindir())
