from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0006_alter_product_name")]

    operations = [
        migrations.RenameField(model_name="customer", old_name="name", new_name="full_name"),
        migrations.AlterField(
            model_name="customer",
            name="full_name",
            field=models.CharField(max_length=200),
        ),
    ]
