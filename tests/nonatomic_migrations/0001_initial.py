"""The test app ``seedapp``'s table, by a non-atomic migration with one atomic operation that
says whether it ran in a transaction."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


def seed(apps: Any, schema_editor: Any) -> None:
    label = "in a transaction" if schema_editor.connection.in_atomic_block else "autocommit"
    apps.get_model("seedapp", "Seed").objects.create(label=label)


class Migration(migrations.Migration):
    initial = True
    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Seed",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("label", models.CharField(max_length=50)),
            ],
        ),
        migrations.RunPython(seed, atomic=True),
        migrations.RunPython(seed),
    ]
