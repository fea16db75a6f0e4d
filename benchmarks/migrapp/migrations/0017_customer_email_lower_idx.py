from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0016_order_total")]

    # Unqualified names: they resolve on the search path, i.e. in the schema being migrated.
    operations = [
        migrations.RunSQL(
            "CREATE INDEX customer_email_lower_idx ON migrapp_customer (lower(email))",
            "DROP INDEX customer_email_lower_idx",
        ),
    ]
