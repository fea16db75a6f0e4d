from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import request_finished
from django.db.models.signals import post_migrate
from django.test.signals import setting_changed


class SchemataConfig(AppConfig):
    name = "schemata"
    verbose_name = "Schemata"
    # The migrations of the run-time tenants' tables must not follow the project's setting.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from schemata import checks  # noqa: F401  (registers the system checks)
        from schemata.compat import check_django
        from schemata.conf import conf
        from schemata.connections import (
            discard_on_setting_change,
            install,
            release_idle_connections,
        )
        from schemata.guard import rebuild_after_migrate
        from schemata.registry import forget_on_setting_change

        check_django()
        install()
        request_finished.connect(release_idle_connections, dispatch_uid="schemata.release")
        setting_changed.connect(conf.forget, dispatch_uid="schemata.conf")
        setting_changed.connect(discard_on_setting_change, dispatch_uid="schemata.settings")
        setting_changed.connect(forget_on_setting_change, dispatch_uid="schemata.registry")
        post_migrate.connect(rebuild_after_migrate, sender=self, dispatch_uid="schemata.guard")
