from __future__ import annotations

from django.db import models


class Announcement(models.Model):
    """News for every tenant: a shared app, so its one table lives in public."""

    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text
