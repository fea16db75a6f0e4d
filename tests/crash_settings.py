"""Settings of tests/crash_script.py: a light project (17 migrations per schema, a data
migration, content types and permissions in each schema), on the database DATABASE_URL names."""

from __future__ import annotations

import environ

from schemata import expand_databases

env = environ.Env()

SECRET_KEY = "tests-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "schemata",
    "tests.seedapp",
]
MIDDLEWARE = ["schemata.middleware.SchemataMiddleware"]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
SCHEMATA_DOMAINS = {
    f"{name}.example.com": {"schema_name": name} for name in ("ref", "c0", "c1", "c2")
}
DATABASES = expand_databases({"default": env.db("DATABASE_URL")}, SCHEMATA_DOMAINS)
