from __future__ import annotations

from django.conf import settings
from django.db import models


class Seed(models.Model):
    """Filled by a data migration that uses the ORM without .using()."""

    label = models.CharField(max_length=50)
    # A tenant table pointing to a shared one when auth is a shared app.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
