"""Hand the active schema to threads and executors, which start with none of their own."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from schemata.connections import SchemataConnectionHandler

P = ParamSpec("P")
R = TypeVar("R")


def keep_schema(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to the caller's context: wherever it runs, the schema is this one."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        opened = _open_aliases()
        try:
            # A copy per call: a Context cannot be entered by two threads at once, and one
            # call's activate() must not leak into the next.
            return context.copy().run(fn, *args, **kwargs)
        finally:
            _close_opened_since(opened)

    return run


def _open_aliases() -> set[str]:
    from django.db import connections

    return {conn.alias for conn in connections.all(initialized_only=True) if conn.connection}


def _close_opened_since(opened: set[str]) -> None:
    from django.db import connections as handler

    # Django closes connections at the end of a request only: a thread of our own would keep
    # them open until it is garbage collected. Connections that were open before the call
    # (it may run in the caller's own thread) are the caller's.
    # SchemataConfig.ready() gave django.db.connections this class.
    connections = cast("SchemataConnectionHandler", handler)
    for conn in connections.all(initialized_only=True):
        if conn.connection and conn.alias not in opened:
            conn.close()
    connections.release_idle()
