from __future__ import annotations

import os
import signal
import time
from typing import Any

from django.db import migrations


def seed(apps: Any, schema_editor: Any) -> None:
    # No .using(): the row must land in the schema being migrated.
    apps.get_model("seedapp", "Seed").objects.create(label="seeded")
    # Test hook: interrupt the command (or its parent, from a worker) after this schema.
    interrupted = os.environ.get("SCHEMATA_TEST_INTERRUPT")
    gate = os.environ.get("SCHEMATA_TEST_INTERRUPT_GATE")  # a file: made once it was sent
    if interrupted == schema_editor.connection.alias:
        target = os.getppid() if os.environ.get("SCHEMATA_TEST_INTERRUPT_PARENT") else os.getpid()
        os.kill(target, signal.SIGINT)
        if gate:
            open(gate, "x").close()
    elif interrupted and gate:
        # Other workers' schemas wait for it, so they cannot all finish before it is sent.
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)


class Migration(migrations.Migration):
    dependencies = [("seedapp", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
