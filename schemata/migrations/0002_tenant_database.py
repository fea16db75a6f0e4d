from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("schemata", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="database",
            field=models.CharField(default="default", max_length=100),
        ),
    ]
