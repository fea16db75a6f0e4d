"""Every Django internal django-schemata relies on, checked once at start-up.

Each entry names what is used and where. A Django release that renames or removes one fails at
``django.setup()`` with a message that says what changed, instead of misbehaving later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured


def _has(owner: Callable[[], Any], *names: str) -> Callable[[], list[str]]:
    def check() -> list[str]:
        target = owner()
        return [
            f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"
            f".{name}"
            for name in names
            if not hasattr(target, name)
        ]

    return check


def _connection_handler() -> Any:
    from django.db.utils import ConnectionHandler

    return ConnectionHandler


def _base_wrapper() -> Any:
    from django.db.backends.base.base import BaseDatabaseWrapper

    return BaseDatabaseWrapper


def _postgresql_wrapper() -> Any:
    from django.db.backends.postgresql.base import DatabaseWrapper

    return DatabaseWrapper


def _postgresql_client() -> Any:
    from django.db.backends.postgresql.client import DatabaseClient

    return DatabaseClient


def _test_case() -> Any:
    from django.test import TestCase

    return TestCase


def _atomic() -> Any:
    from django.db.transaction import Atomic

    return Atomic(None, True, False)  # instance attributes are set in __init__


#: What is relied on, and by which module.
REQUIREMENTS: dict[str, Callable[[], list[str]]] = {
    # connections.py: schema aliases made and tracked by the handler; its cached DATABASES.
    "connections": _has(
        _connection_handler, "create_connection", "settings", "all", "close_all", "thread_critical"
    ),
    # backend.py: a pooled connection borrowed and given back inside connect()/close().
    "backend": _has(
        _base_wrapper,
        "connect",
        "close",
        "get_new_connection",
        "_close",
        "init_connection_state",
        "get_connection_params",
        "_set_autocommit",
        "close_if_unusable_or_obsolete",
    ),
    "backend (PostgreSQL)": _has(
        _postgresql_wrapper, "pool", "introspection_class", "client_class"
    ),
    "dbshell": _has(_postgresql_client, "settings_to_cmd_args_env"),
    # testing.py: schema transactions entered per test, as TestCase does for listed aliases.
    "testing": _has(_test_case, "_fixture_setup", "_fixture_teardown", "_enter_atomics"),
    "testing (atomic)": _has(_atomic, "_from_testcase", "durable"),
}


def check_django() -> None:
    """Raise ``ImproperlyConfigured`` naming every internal this Django release lacks."""
    missing = [f"{name}: {item}" for name, check in REQUIREMENTS.items() for item in check()]
    if missing:
        import django

        raise ImproperlyConfigured(
            f"django-schemata does not support Django {django.get_version()}: it relies on "
            f"{', '.join(missing)}, which this release does not have."
        )
