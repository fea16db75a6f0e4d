"""The test settings with tenants registered at run time on (for servers and commands that
the tests start in processes of their own)."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import env

SCHEMATA_RUNTIME_TENANTS = True
SCHEMATA_TENANT_REFRESH = env.float("SCHEMATA_TEST_TENANT_REFRESH", default=0.5)
ROOT_URLCONF = "tests.tenant_urls"
