from __future__ import annotations

import environ

from schemata import expand_databases

env = environ.Env()

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = [".example.com", "testserver"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "schemata",
    "tests.testapp",
    "tests.seedapp",
]
MIDDLEWARE = [
    "schemata.middleware.SchemataMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]

SCHEMATA_DOMAINS = {
    "alpha.example.com": {"schema_name": "alpha", "plan": "pro", "colour": "red"},
    "www.alpha.example.com": {"schema_name": "alpha", "plan": "pro"},
    "beta.example.com": {"schema_name": "beta", "plan": "free"},
    # Never created in the test database: shows what a missing schema does.
    "ghost.example.com": {"schema_name": "ghost"},
    # Created, migrated and dropped by the command tests.
    **{f"fresh{i}.example.com": {"schema_name": f"fresh{i}"} for i in range(1, 5)},
    # For the concurrency tests: one schema per thread or task.
    **{f"t{i:02}.example.com": {"schema_name": f"t{i:02}"} for i in range(64)},
}
DATABASES = expand_databases({"default": env.db("DATABASE_URL")}, SCHEMATA_DOMAINS)
