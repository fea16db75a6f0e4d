"""Errors raised by django-schemata at run time."""

from __future__ import annotations


class SchemataError(Exception):
    """Base class of every error django-schemata raises at run time."""


class UnknownSchema(SchemataError, LookupError):
    """A schema name that no domain in ``SCHEMATA_DOMAINS`` names."""


class NoActiveSchema(SchemataError):
    """An operation needed the active schema and none was active (``SCHEMATA_STRICT``, files)."""


class SchemaUnavailable(SchemataError):
    """A new connection's search path did not resolve to its schema."""


class TransactionMismatch(SchemataError):
    """A schema query ran in autocommit while ``transaction.atomic()`` was open elsewhere."""


class ConnectionPoolExhausted(SchemataError):
    """Every connection of a schema pool stayed in use for ``SCHEMATA_POOL["timeout"]``."""
