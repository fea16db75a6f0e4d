from __future__ import annotations

from pathlib import Path

from tests.services import python_output


def test_importing_schemata_in_settings_loads_no_model_and_no_database_code(
    tmp_path: Path,
) -> None:
    code = (
        "import sys, schemata\n"
        "from schemata import expand_databases\n"
        "expand_databases({'default': {}}, {'a.example.com': {'schema_name': 'alpha'}})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('django.db', 'django.apps'))))\n"
    )

    # Run elsewhere than the repository root, whose schemata/ would shadow the installed one.
    assert python_output(code, tmp_path).strip() == "[]"
