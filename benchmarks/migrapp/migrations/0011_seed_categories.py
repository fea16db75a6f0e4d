"""Data migration: seed categories and give every product a SKU and a category.

It uses the historical models' default managers without ``.using()``, as most data migrations
do: the rows must land in the schema being migrated, which the benchmark checks.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CATEGORIES = [("General", "general"), ("Hardware", "hardware"), ("Software", "software")]


def seed(apps: Any, schema_editor: Any) -> None:
    Category = apps.get_model("migrapp", "Category")
    Product = apps.get_model("migrapp", "Product")
    general = None
    for name, slug in CATEGORIES:
        category = Category.objects.create(name=name, slug=slug)
        general = general or category
    for product in Product.objects.filter(sku__isnull=True):
        product.sku = f"SKU-{product.pk:06}"
        product.category = general
        product.save(update_fields=["sku", "category"])


def unseed(apps: Any, schema_editor: Any) -> None:
    Product = apps.get_model("migrapp", "Product")
    Product.objects.update(category=None)
    apps.get_model("migrapp", "Category").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("migrapp", "0010_product_category")]

    operations = [migrations.RunPython(seed, unseed)]
