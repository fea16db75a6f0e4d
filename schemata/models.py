"""Tenants registered at run time, beside those of ``SCHEMATA_DOMAINS``.

Always in the base database's ``public`` schema: the router keeps this app out of schema
aliases, and ``SCHEMATA_SHARED_APPS`` counts it as shared (see ``conf.py``).
"""

from __future__ import annotations

from django.db import models


class Tenant(models.Model):
    """A schema created at run time, and the user's config of its ``Schema``."""

    schema_name = models.CharField(max_length=63, unique=True)
    #: The alias in DATABASES of the server that holds the schema.
    database = models.CharField(max_length=100, default="default")
    config = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["schema_name"]

    def __str__(self) -> str:
        return self.schema_name


class Domain(models.Model):
    """A host that serves a run-time tenant; a tenant's first domain is its primary one."""

    domain = models.CharField(max_length=253, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="domains")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.domain


class Revision(models.Model):
    """One row, bumped in the same transaction as every change of tenants or domains.

    Every process compares it with the number it loaded: one primary-key read tells it whether
    its copy of the tenants is current.
    """

    number = models.BigIntegerField(default=0)
