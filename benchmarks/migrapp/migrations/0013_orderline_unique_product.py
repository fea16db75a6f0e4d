from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0012_alter_product_sku")]

    operations = [
        migrations.AddConstraint(
            model_name="orderline",
            constraint=models.UniqueConstraint(
                fields=("order", "product"), name="orderline_unique_product"
            ),
        ),
    ]
