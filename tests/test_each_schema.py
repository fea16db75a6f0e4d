"""each_schema for one schema: raw output, a file per schema, a shell and dbshell in a schema."""

from __future__ import annotations

import json
import os
import pty
import re
import select
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


def test_on_a_terminal_the_progress_is_a_bar_and_not_lines() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url_of_test_database(),
        "COLUMNS": "90",
    }
    main, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "each_schema", "--schema", "alpha",
             "--schema", "beta", "showmigrations", "testapp", "--no-color"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        os.close(secondary)
        shown = read_terminal(main)
        _, err = process.communicate(timeout=60)
    finally:
        os.close(main)

    assert process.returncode == 0, err
    assert "Progress:" not in shown
    lines = re.sub(r"\r\[[#.]+\][^\r\n]*\x1b\[K|\r\x1b\[K", "", shown).splitlines()
    assert lines == [
        "[alpha] testapp",
        "[alpha]  [X] 0001_initial",
        "[beta] testapp",
        "[beta]  [X] 0001_initial",
        "",  # the line the bar was on
        "Summary: 2 done.",
    ]
    assert shown.endswith(
        "\r[##############################] 100% 2/2 schemas, 0 failed\x1b[K\nSummary: 2 done.\n"
    )


def read_terminal(fd: int, timeout: float = 60) -> str:
    """What was written to the terminal whose reading end is ``fd``, until its writer exits."""
    chunks = []
    while select.select([fd], [], [], timeout)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writing end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    # The terminal turns "\n" into "\r\n".
    return b"".join(chunks).decode().replace("\r\n", "\n")


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


def test_dbshell_on_a_schema_gives_back_the_processs_own_pgoptions(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", f"{psql_dir()}:{os.environ['PATH']}")
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=64MB")

    connections["beta"].client.runshell(["-Atc", "SELECT current_schema()"])

    assert capfd.readouterr().out.strip() == "beta"
    assert os.environ["PGOPTIONS"] == "-c work_mem=64MB"


def url_of_test_database() -> str:
    """DATABASE_URL, pointing at the test database of this session."""
    name = connections["default"].settings_dict["NAME"]
    return f"{os.environ['DATABASE_URL'].rsplit('/', 1)[0]}/{name}"


def psql_dir() -> str:
    return str(find_bindir())
