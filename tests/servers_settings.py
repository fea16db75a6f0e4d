"""The project of the several-servers tests: tenants on 'default' and on 'eu'.

``EU_SCHEMAS`` (comma-separated) says which of the settings' schemas live on ``eu``; the
tests change it to move a tenant. The URLs are here too: one view naming the request's tenant
and its notes.
"""

from __future__ import annotations

import environ
from django.http import HttpRequest, JsonResponse
from django.urls import path

from schemata import expand_databases

env = environ.Env()

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = [".example.com", "testserver"]
ROOT_URLCONF = "tests.servers_settings"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "schemata",
    "tests.testapp",
]
MIDDLEWARE = ["schemata.middleware.SchemataMiddleware"]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
SCHEMATA_SHARED_APPS = ["contenttypes"]
SCHEMATA_RUNTIME_TENANTS = True
SCHEMATA_TENANT_REFRESH = 0
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "schemata.cache.make_key",
    },
}
STORAGES = {"default": {"BACKEND": "schemata.storage.SchemaFileSystemStorage"}}

ON_EU = env.list("EU_SCHEMAS", default=["sb", "sc"])
SCHEMATA_DOMAINS = {
    f"{name}.example.com": {"schema_name": name, **({"database": "eu"} if name in ON_EU else {})}
    for name in ("sa", "sb", "sc")
}
DATABASES = expand_databases(
    {"default": env.db("DATABASE_URL"), "eu": env.db("EU_DATABASE_URL")}, SCHEMATA_DOMAINS
)


def notes(request: HttpRequest) -> JsonResponse:
    from tests.testapp.models import Note

    return JsonResponse(
        {
            "schema": request.schema.name,  # type: ignore[attr-defined]
            "notes": sorted(Note.objects.values_list("title", flat=True)),
        }
    )


urlpatterns = [path("", notes)]
