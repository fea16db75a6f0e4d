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
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "schemata",
    "schemata.auth",
    "tests.testapp",
    "tests.seedapp",
]
MIDDLEWARE = [
    "schemata.middleware.SchemataMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
AUTHENTICATION_BACKENDS = ["schemata.auth.backends.MembershipBackend"]
SESSION_ENGINE = "schemata.sessions.db"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "schemata.cache.make_key",
    },
}
STORAGES = {
    "default": {"BACKEND": "schemata.storage.SchemaFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "schemata.auth.rest_framework.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

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
# Follows DEBUG, as by default; set, so the pytest plugin leaves it so (the guard's own tests
# turn it on, or DEBUG).
SCHEMATA_ATOMIC_GUARD = None
