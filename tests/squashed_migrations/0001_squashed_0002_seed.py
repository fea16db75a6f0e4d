from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    replaces = [("seedapp", "0001_initial"), ("seedapp", "0002_seed")]
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Seed",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("label", models.CharField(max_length=50)),
            ],
        ),
    ]
