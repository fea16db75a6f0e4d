"""The active schema, kept in a ``ContextVar`` so threads and asyncio tasks each see their own."""

from __future__ import annotations

from contextlib import ContextDecorator
from contextvars import ContextVar, Token
from typing import Any

from schemata.conf import conf
from schemata.databases import Schema
from schemata.exceptions import UnknownSchema

# A ContextVar, not asgiref's Local: its value follows asyncio.to_thread, executor.submit(ctx.run)
# and sync_to_async, where Local loses it.
_current: ContextVar[Schema | None] = ContextVar("schemata_current_schema", default=None)


def get_current_schema() -> Schema | None:
    """Return the active ``Schema``, or ``None`` when no schema is active."""
    return _current.get()


def get_schema(name: str | Schema) -> Schema:
    """Return the ``Schema`` called ``name``; raise ``UnknownSchema`` if no domain names it."""
    if isinstance(name, Schema):
        return name
    # A run-time tenant removed by another process is unknown here within the refresh bound.
    schema = conf.databases.schemas.find(name)
    if schema is None:
        raise UnknownSchema(f"No domain in SCHEMATA_DOMAINS uses the schema {name!r}.")
    return schema


def activate(schema: str | Schema) -> Token[Schema | None]:
    """Make ``schema`` active in the current context; pass the returned token to ``reset``."""
    return _current.set(get_schema(schema))


def deactivate() -> Token[Schema | None]:
    """Leave no schema active in the current context; pass the returned token to ``reset``."""
    return _current.set(None)


def reset(token: Token[Schema | None]) -> None:
    """Restore the schema that was active before the call that returned ``token``."""
    _current.reset(token)


class override(ContextDecorator):
    """Activate ``schema`` (``None``: none) in a ``with`` block or a decorated function."""

    def __init__(self, schema: str | Schema | None) -> None:
        self.schema = None if schema is None else get_schema(schema)
        self._token: Token[Schema | None] | None = None

    def _recreate_cm(self) -> override:
        # A decorated function can run in several threads at once: one token per call.
        return type(self)(self.schema)

    def __enter__(self) -> Schema | None:
        self._token = _current.set(self.schema)
        return self.schema

    def __exit__(self, *exc_info: Any) -> None:
        assert self._token is not None
        _current.reset(self._token)
        self._token = None
