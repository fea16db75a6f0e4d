from __future__ import annotations

import subprocess
import sys


def test_importing_schemata_in_settings_loads_no_model_and_no_database_code() -> None:
    code = (
        "import sys, schemata\n"
        "from schemata import expand_databases\n"
        "expand_databases({'default': {}}, {'a.example.com': {'schema_name': 'alpha'}})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('django.db', 'django.apps'))))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
