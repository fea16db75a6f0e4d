"""The database router that sends ORM queries to the active schema's alias."""

from __future__ import annotations

from typing import Any

from django.db import models

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE
from schemata.exceptions import NoActiveSchema
from schemata.state import get_current_schema


class SchemataRouter:
    """Route reads and writes to the active schema; an instance's own database wins."""

    def _route(self, model: type[models.Model], hints: dict[str, Any]) -> str | None:
        if model._meta.app_label == "schemata":
            return DEFAULT_BASE  # the registry of run-time tenants is in public, only
        # Django consults instance._state.db only when every router returns None; answering
        # from the context first would save an object loaded in schema A into schema B.
        instance = hints.get("instance")
        if instance is not None and instance._state.db is not None:
            return instance._state.db  # type: ignore[no-any-return]
        schema = get_current_schema()
        if schema is not None:
            # Shared models too: the schema's search path reaches public, and one connection
            # keeps shared and schema writes in one transaction.
            return schema.alias
        if conf.STRICT and model._meta.app_label not in conf.SHARED_APPS:
            raise NoActiveSchema(
                f"{model._meta.label} was queried with no active schema and SCHEMATA_STRICT "
                f"is on: activate a schema (SchemataMiddleware, schemata.activate() or "
                f"schemata.override()) or pass .using(alias)."
            )
        return None

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return self._route(model, hints)

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool | None:
        db1, db2 = obj1._state.db, obj2._state.db
        if db1 is None or db2 is None:
            return None
        if db1 not in conf.databases.schemas and db2 not in conf.databases.schemas:
            return None  # the project's own aliases (a replica, say): its routers decide
        # Schemas of one server may refer to each other (and to its public); a foreign key
        # cannot reach another server's tables.
        return _server(db1) == _server(db2)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label == "schemata":
            return db == DEFAULT_BASE
        shared = conf.SHARED_APPS
        if not shared:
            return None  # every app in every schema and in the base database
        return (app_label in shared) != (db in conf.databases.schemas)


def _server(alias: str) -> tuple[Any, ...]:
    """Identify the physical database behind ``alias``."""
    databases = conf.databases
    schema = databases.schemas.get(alias)
    settings = databases.get(schema.base if schema else alias) or {}
    return (settings.get("HOST"), settings.get("PORT"), settings.get("NAME"))
