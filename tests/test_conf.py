"""How settings are read: once per settings object, anew after a change."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings
from django.test.signals import setting_changed

from schemata.conf import conf


def test_a_setting_is_read_anew_under_override_settings() -> None:
    assert conf.POOL.max_size == 10
    with override_settings(SCHEMATA_POOL={"max_size": 3}):
        assert conf.POOL.max_size == 3
    assert conf.POOL.max_size == 10


def test_a_setting_changed_in_place_is_read_anew_after_setting_changed() -> None:
    with override_settings(SCHEMATA_STRICT=False):
        assert conf.STRICT is False
        # The settings object stays the same: only the signal says the value changed.
        settings.SCHEMATA_STRICT = True
        setting_changed.send(sender=None, setting="SCHEMATA_STRICT", value=True, enter=True)
        assert conf.STRICT is True
