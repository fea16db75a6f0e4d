"""The Citus tests' project: a shared app whose table tenant tables reference."""

from __future__ import annotations

import environ

from schemata import expand_databases

env = environ.Env()

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = [".example.com", "testserver"]
ROOT_URLCONF = "tests.citus_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "schemata",
    "tests.citus_shared",
    "tests.citus_tenant",
]
MIDDLEWARE = ["schemata.middleware.SchemataMiddleware"]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
SCHEMATA_SHARED_APPS = ["contenttypes", "citus_shared"]
TENANTS = tuple(env.list("CITUS_TENANTS", default=["t1", "t2", "t3", "t4", "t5", "t6"]))
SCHEMATA_DOMAINS = {f"{name}.example.com": {"schema_name": name} for name in TENANTS}
DATABASES = expand_databases(
    {"default": {**env.db("DATABASE_URL"), "CONN_MAX_AGE": 60}}, SCHEMATA_DOMAINS
)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "schemata.cache.make_key",
    },
}
STORAGES = {"default": {"BACKEND": "schemata.storage.SchemaFileSystemStorage"}}
SCHEMATA_POOL = {"max_size": 4, "timeout": 10}
LOGGING = {
    "version": 1,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
