"""django-schemata: a schema alias per tenant, on the default pool (SCHEMATA_POOL)."""

from __future__ import annotations

import os

from benchmarks.shop.settings.common import *  # noqa: F403
from benchmarks.shop.settings.common import DOMAINS, database
from schemata import expand_databases

INSTALLED_APPS = ["schemata", "benchmarks.shop"]
MIDDLEWARE = ["schemata.middleware.SchemataMiddleware"]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
SCHEMATA_DOMAINS = {host: {"schema_name": schema} for host, schema in DOMAINS.items()}
DATABASES = expand_databases({"default": database()}, SCHEMATA_DOMAINS)

if int(os.environ.get("SHOP_POOL_MAX_SIZE", "0")):  # --pool-sizes
    SCHEMATA_POOL = {"max_size": int(os.environ["SHOP_POOL_MAX_SIZE"])}
