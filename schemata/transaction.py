"""Transaction helpers that follow the active schema instead of ``default``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ContextDecorator
from typing import Any, TypeVar, overload

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from schemata.conf import conf
from schemata.databases import DEFAULT_BASE
from schemata.exceptions import NoActiveSchema
from schemata.state import get_current_schema

F = TypeVar("F", bound=Callable[..., Any])


def get_alias() -> str:
    """Return the active schema's alias; with none active, ``default`` (or raise if strict)."""
    schema = get_current_schema()
    if schema is not None:
        return schema.alias
    if conf.STRICT:
        raise NoActiveSchema(
            "No schema is active and SCHEMATA_STRICT is on: activate one with "
            "schemata.activate() or schemata.override(), or pass the alias explicitly."
        )
    return DEFAULT_BASE


def get_connection() -> BaseDatabaseWrapper:
    """Return the connection of the active schema (see ``get_alias``)."""
    return connections[get_alias()]


def on_commit(func: Callable[[], Any], robust: bool = False) -> None:
    """Run ``func`` when the active schema's current transaction commits."""
    transaction.on_commit(func, using=get_alias(), robust=robust)


class _Atomic(ContextDecorator):
    def __init__(self, savepoint: bool, durable: bool) -> None:
        self.savepoint = savepoint
        self.durable = durable
        self._atomic: transaction.Atomic | None = None

    def _recreate_cm(self) -> _Atomic:
        # The alias is chosen when the block is entered, not when a function is decorated.
        return _Atomic(self.savepoint, self.durable)

    def __enter__(self) -> None:
        self._atomic = transaction.atomic(
            using=get_alias(), savepoint=self.savepoint, durable=self.durable
        )
        self._atomic.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        assert self._atomic is not None
        self._atomic.__exit__(*exc_info)


@overload
def atomic(using: F) -> F: ...
@overload
def atomic(*, savepoint: bool = True, durable: bool = False) -> _Atomic: ...
def atomic(using: Any = None, *, savepoint: bool = True, durable: bool = False) -> Any:
    """``transaction.atomic()`` on the schema active when the block is entered."""
    if callable(using):
        return _Atomic(savepoint, durable)(using)
    return _Atomic(savepoint, durable)
