from __future__ import annotations

import os
import signal
from typing import Any

from django.db import migrations


def seed(apps: Any, schema_editor: Any) -> None:
    # No .using(): the row must land in the schema being migrated.
    apps.get_model("seedapp", "Seed").objects.create(label="seeded")
    # Test hook: interrupt the command (or its parent, from a worker) after this schema.
    if os.environ.get("SCHEMATA_TEST_INTERRUPT") == schema_editor.connection.alias:
        target = os.getppid() if os.environ.get("SCHEMATA_TEST_INTERRUPT_PARENT") else os.getpid()
        os.kill(target, signal.SIGINT)


class Migration(migrations.Migration):
    dependencies = [("seedapp", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
