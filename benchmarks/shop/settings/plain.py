"""Plain Django: no tenants, the table in public."""

from __future__ import annotations

from benchmarks.shop.settings.common import *  # noqa: F403
from benchmarks.shop.settings.common import database

INSTALLED_APPS = ["benchmarks.shop"]
MIDDLEWARE: list[str] = []
DATABASES = {"default": database()}
