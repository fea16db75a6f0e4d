"""Settings for the processes that benchmarks/migrations.py starts.

A real module rather than ``settings.configure()``: ``migrate_schemata --parallel`` spawns
worker processes that import it by name. Values come from the environment:

- ``DATABASE_URL``: the server (its database name is replaced by the next variable);
- ``SCHEMATA_BENCH_DATABASE``: the database to use;
- ``SCHEMATA_BENCH_SCHEMAS``: the number of domains/schemas, ``t0.example.com`` -> ``t0``...
"""

from __future__ import annotations

import os

import environ

from schemata import expand_databases

env = environ.Env()

SECRET_KEY = "benchmark"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = [".example.com"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "schemata",
    "benchmarks.migrapp",
]
MIDDLEWARE = ["schemata.middleware.SchemataMiddleware"]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]

SCHEMATA_DOMAINS = {
    f"t{i}.example.com": {"schema_name": f"t{i}"}
    for i in range(int(os.environ.get("SCHEMATA_BENCH_SCHEMAS", "10")))
}
_default = env.db("DATABASE_URL")
if os.environ.get("SCHEMATA_BENCH_DATABASE"):
    _default["NAME"] = os.environ["SCHEMATA_BENCH_DATABASE"]
DATABASES = expand_databases({"default": _default}, SCHEMATA_DOMAINS)
