"""django-tenants with its documented settings: a Client and a Domain row per tenant."""

from __future__ import annotations

from benchmarks.shop.settings.common import *  # noqa: F403
from benchmarks.shop.settings.common import database

SHARED_APPS = ["django_tenants", "django.contrib.contenttypes", "benchmarks.shop.customers"]
TENANT_APPS = ["benchmarks.shop"]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]
TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"
MIDDLEWARE = ["django_tenants.middleware.main.TenantMainMiddleware"]
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
DATABASES = {"default": {**database(), "ENGINE": "django_tenants.postgresql_backend"}}
