from __future__ import annotations

from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    # The benchmark creates schemas and their tables itself, in bulk.
    auto_create_schema = False

    class Meta:
        app_label = "customers"


class Domain(DomainMixin):
    class Meta:
        app_label = "customers"
