"""Start-up refuses a Django release that lacks an internal the package relies on."""

from __future__ import annotations

import django
import pytest
from django.core.exceptions import ImproperlyConfigured

from schemata import compat


def test_this_django_has_everything_relied_on() -> None:
    compat.check_django()


def test_a_missing_internal_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper

    monkeypatch.delattr(BaseDatabaseWrapper, "get_new_connection")

    with pytest.raises(ImproperlyConfigured) as excinfo:
        compat.check_django()

    assert str(excinfo.value) == (
        f"django-schemata does not support Django {django.get_version()}: it relies on "
        "backend: django.db.backends.base.base.BaseDatabaseWrapper.get_new_connection, which "
        "this release does not have."
    )
