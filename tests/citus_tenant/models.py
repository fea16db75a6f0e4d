from __future__ import annotations

from django.db import models


class Order(models.Model):
    """A tenant's row, with a foreign key to a shared table."""

    title = models.CharField(max_length=100)
    plan = models.ForeignKey("citus_shared.Plan", on_delete=models.PROTECT)
    # Declared: the type checker reads the tests' main settings, where this app is not installed.
    objects: models.Manager[Order] = models.Manager()


class Line(models.Model):
    """A second tenant table, with a foreign key inside the tenant's schema."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE)
    quantity = models.IntegerField(default=1)
