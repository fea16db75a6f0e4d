"""The test app ``seedapp``'s tables, then a migration that fails: a tenant half migrated."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def fail(apps: Any, schema_editor: Any) -> None:
    raise RuntimeError("this migration fails on purpose")


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Seed",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("label", models.CharField(max_length=50)),
            ],
        ),
        migrations.RunPython(fail),
    ]
