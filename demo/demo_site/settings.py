"""Settings of the demo: three tenants on one database, one schema each."""

from __future__ import annotations

from pathlib import Path

import environ

from schemata import expand_databases

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="demo-only-not-a-secret")
DEBUG = True
ALLOWED_HOSTS = [".localhost", "127.0.0.1", "localhost"]
ROOT_URLCONF = "demo_site.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
# Uploads: each tenant's in MEDIA_ROOT/<schema>/, served on its own host at MEDIA_URL.
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / ".media"))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "schemata.storage.SchemaFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "schemata",
    "announcements",
    "notes",
]

MIDDLEWARE = [
    # First: everything below it (sessions, auth, messages) reads and writes the tenant's schema.
    "schemata.middleware.SchemataMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/admin/ puts the tenant in the admin's header.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Each domain names its schema; every other key is ours, read as request.schema.config.
SCHEMATA_DOMAINS = {
    "alpha.localhost": {"schema_name": "alpha", "plan": "pro", "colour": "#2b6cb0"},
    "beta.localhost": {"schema_name": "beta", "plan": "free", "colour": "#2f855a"},
    "gamma.localhost": {"schema_name": "gamma", "plan": "enterprise", "colour": "#9b2c2c"},
    # The sign-up page; its schema, migrated but never given data, is what new tenants copy.
    "localhost": {"schema_name": "template", "colour": "#2d3748"},
}
# Tenants signed up on http://localhost:8000/ live in the database, beside the ones above.
SCHEMATA_RUNTIME_TENANTS = True
# Tables in public, shared by every tenant; every other app has its tables in each schema
# (users and sessions too: each tenant has its own admin accounts, and a login is bound to it).
SCHEMATA_SHARED_APPS = ["announcements"]
DATABASES = expand_databases({"default": env.db("DATABASE_URL")}, SCHEMATA_DOMAINS)
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
# Every cached value under its tenant's name: one tenant never reads another's.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "schemata.cache.make_key",
    },
}
