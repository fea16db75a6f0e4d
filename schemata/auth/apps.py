from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_save, pre_save


class SchemataAuthConfig(AppConfig):
    name = "schemata.auth"
    label = "schemata_auth"
    verbose_name = "Schemata: tenant members"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from schemata.auth import members

        user_model = get_user_model()
        pre_save.connect(members.store_global_flags, sender=user_model, dispatch_uid=__name__)
        post_save.connect(members.after_user_saved, sender=user_model, dispatch_uid=__name__)
