"""The mark a schema gets once ``migrate`` finished on it, ``post_migrate`` included.

Migration rows alone cannot say a schema is complete: they are written migration by
migration, and the content types and permissions of ``post_migrate`` come after the last one.
A run killed in between left rows that looked complete. So ``migrate_schemata`` adds one row of
its own to the schema's ``django_migrations`` once ``migrate`` has returned, naming a digest of
the migrations on disk: read in the same query as the other rows, it costs nothing to check for
thousands of schemas. Django ignores rows that match no migration on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import connections

Key = tuple[str, str]

#: The app column of the marker row: this package's label, which has no migrations.
APP = "schemata"
PREFIX = "migrated:"


def digest(keys: Iterable[Key]) -> str:
    """A short digest of a set of migrations: the marker of a schema that has them all."""
    text = "\n".join(sorted(f"{app}.{name}" for app, name in keys))
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def is_marker(key: Key) -> bool:
    return key[0] == APP and key[1].startswith(PREFIX)


def write_marker(alias: str, mark: str) -> None:
    """Replace the marker in ``alias``'s ``django_migrations`` with ``mark``, at once."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "WITH old AS (DELETE FROM django_migrations WHERE app = %s AND name LIKE %s) "
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())",
            [APP, PREFIX + "%", APP, mark],
        )
