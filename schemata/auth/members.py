"""Memberships applied to shared users: who may use the active tenant, and with which flags."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import models

from schemata.conf import conf
from schemata.state import get_current_schema

FLAGS = ("is_staff", "is_superuser")


def users_are_shared() -> bool:
    """Whether the user model's table is shared by every tenant (so memberships apply)."""
    return get_user_model()._meta.app_label in conf.SHARED_APPS


def apply_membership(user: models.Model) -> models.Model | None:
    """Return ``user`` with the active tenant's flags, or ``None`` if the tenant refuses them.

    With no schema active, or users kept per tenant, ``user`` is returned as it is.
    """
    if get_current_schema() is None or not users_are_shared():
        return user
    from schemata.auth.models import Membership

    grant = Membership.objects.filter(pk=user.pk, is_active=True).values_list(*FLAGS).first()
    if grant is None:
        return None
    # The user row is global: its own flags would make a superuser of every tenant. They are
    # put back by store_global_flags() whenever this instance is saved.
    user._schemata_global_flags = tuple(getattr(user, flag, False) for flag in FLAGS)  # type: ignore[attr-defined]
    for flag, value in zip(FLAGS, grant, strict=True):
        setattr(user, flag, value)
    return user


def store_global_flags(sender: Any, instance: models.Model, **kwargs: Any) -> None:
    """``pre_save``: save a user's global flags, not the tenant's it was given in memory."""
    saved = getattr(instance, "_schemata_global_flags", None)
    if saved is not None:
        instance._schemata_tenant_flags = tuple(getattr(instance, f) for f in FLAGS)  # type: ignore[attr-defined]
        for flag, value in zip(FLAGS, saved, strict=True):
            setattr(instance, flag, value)


def after_user_saved(
    sender: Any, instance: models.Model, created: bool, using: str, **kwargs: Any
) -> None:
    """``post_save``: restore the tenant's flags; make a user created on a tenant its member."""
    tenant_flags = instance.__dict__.pop("_schemata_tenant_flags", None)
    if tenant_flags is not None:
        for flag, value in zip(FLAGS, tenant_flags, strict=True):
            setattr(instance, flag, value)
    if created and not kwargs.get("raw") and users_are_shared():
        schema = conf.databases.schemas.get(using)
        if schema is not None:
            from schemata.auth.models import Membership

            # createsuperuser on a tenant means a superuser of that tenant, not of all.
            flags = {flag: bool(getattr(instance, flag, False)) for flag in FLAGS}
            Membership.objects.using(using).create(user_id=instance.pk, **flags)
