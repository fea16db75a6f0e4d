"""PostgreSQL schema multi-tenancy for Django: one database alias per schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemata.context import keep_schema
from schemata.databases import Schema, expand_databases
from schemata.exceptions import (
    ConnectionPoolExhausted,
    NoActiveSchema,
    SchemataError,
    SchemaUnavailable,
    TransactionMismatch,
    UnknownSchema,
)
from schemata.state import (
    activate,
    deactivate,
    get_current_schema,
    get_schema,
    override,
    reset,
)

if TYPE_CHECKING:  # imported lazily below: a settings module must not load django.db
    from schemata.cloning import clone_schema
    from schemata.tenants import add_domain, create_tenant, delete_tenant, remove_domain
    from schemata.transaction import atomic, get_connection, on_commit

__all__ = [
    "ConnectionPoolExhausted",
    "NoActiveSchema",
    "Schema",
    "SchemaUnavailable",
    "SchemataError",
    "TransactionMismatch",
    "UnknownSchema",
    "activate",
    "add_domain",
    "atomic",
    "clone_schema",
    "create_tenant",
    "deactivate",
    "delete_tenant",
    "expand_databases",
    "get_connection",
    "get_current_schema",
    "get_schema",
    "keep_schema",
    "on_commit",
    "override",
    "remove_domain",
    "reset",
]


def __getattr__(name: str) -> object:
    # The transaction helpers import django.db, which a settings module must not trigger.
    if name in {"atomic", "get_connection", "on_commit"}:
        from schemata import transaction

        return getattr(transaction, name)
    if name == "clone_schema":
        from schemata.cloning import clone_schema

        return clone_schema
    if name in {"add_domain", "create_tenant", "delete_tenant", "remove_domain"}:
        from schemata import tenants

        return getattr(tenants, name)
    raise AttributeError(f"module 'schemata' has no attribute {name!r}")
