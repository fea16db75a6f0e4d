"""The test project once it uses schemas: shared users, and its data as the tenant ``shop``."""

from __future__ import annotations

from schemata import expand_databases
from tests.settings import *  # noqa: F403
from tests.settings import env

SCHEMATA_SHARED_APPS = ["contenttypes", "auth", "sessions"]
SCHEMATA_DOMAINS = {"shop.example.com": {"schema_name": "shop"}}
DATABASES = expand_databases({"default": env.db("DATABASE_URL")}, SCHEMATA_DOMAINS)
