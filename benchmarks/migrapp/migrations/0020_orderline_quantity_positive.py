from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0019_invoice_paid_alter_order_status")]

    operations = [
        migrations.AddConstraint(
            model_name="orderline",
            constraint=models.CheckConstraint(
                condition=models.Q(quantity__gt=0), name="orderline_quantity_positive"
            ),
        ),
    ]
