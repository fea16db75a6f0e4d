from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import request_finished
from django.db.backends.signals import connection_created


class SchemataConfig(AppConfig):
    name = "schemata"
    verbose_name = "Schemata"

    def ready(self) -> None:
        from schemata import checks  # noqa: F401  (registers the system checks)
        from schemata.connections import install, release_idle_connections, verify_search_path

        install()
        connection_created.connect(verify_search_path, dispatch_uid="schemata.verify")
        request_finished.connect(release_idle_connections, dispatch_uid="schemata.release")
