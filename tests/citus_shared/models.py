from __future__ import annotations

from django.db import models


class Plan(models.Model):
    """A price plan every tenant shares: in public, a reference table on Citus."""

    name = models.CharField(max_length=50, unique=True)
    # Declared: the type checker reads the tests' main settings, where this app is not installed.
    objects: models.Manager[Plan] = models.Manager()
