from __future__ import annotations

import os
from typing import Any

import environ

SECRET_KEY = "benchmark"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.shop.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TENANTS = int(os.environ.get("SHOP_TENANTS", "10"))
DOMAINS = {f"t{i}.example.com": f"t{i}" for i in range(TENANTS)}


def database() -> dict[str, Any]:
    """DATABASE_URL with the configuration's CONN_MAX_AGE; application_name names the
    configuration and the worker process, so the benchmark counts each worker's connections."""
    base: dict[str, Any] = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    base["CONN_MAX_AGE"] = int(os.environ.get("SHOP_CONN_MAX_AGE", "60"))
    label = os.environ.get("SHOP_LABEL", "shop")
    base["OPTIONS"] = {**base.get("OPTIONS", {}), "application_name": f"{label}-{os.getpid()}"}
    return base
