from __future__ import annotations

from django.db import models


class Seed(models.Model):
    """Filled by a data migration that uses the ORM without .using()."""

    label = models.CharField(max_length=50)
