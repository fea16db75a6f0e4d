"""The test app ``seedapp``'s table, made by a migration class with an ``apply`` of its own."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models


class OwnApply(migrations.Migration):
    def apply(self, project_state: Any, schema_editor: Any, collect_sql: bool = False) -> Any:
        state = super().apply(project_state, schema_editor, collect_sql)
        schema_editor.execute("INSERT INTO seedapp_seed (label) VALUES ('own apply')")
        return state


class Migration(OwnApply):
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
    ]
