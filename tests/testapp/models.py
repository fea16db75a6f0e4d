from __future__ import annotations

from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.title


class Tag(models.Model):
    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="tags")
    label = models.CharField(max_length=50)
