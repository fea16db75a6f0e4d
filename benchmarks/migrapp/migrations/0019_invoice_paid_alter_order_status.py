from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0018_tag_product_tags")]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="paid",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="order",
            name="status",
            field=models.CharField(
                choices=[
                    ("new", "New"),
                    ("paid", "Paid"),
                    ("shipped", "Shipped"),
                    ("void", "Void"),
                ],
                default="new",
                max_length=20,
            ),
        ),
    ]
