from __future__ import annotations

from django.conf import settings
from django.db import models


class Membership(models.Model):
    """A shared user's grant on one tenant; the row lives in that tenant's schema."""

    # No database constraint and no cascade: the user row is in public, and deleting a user
    # must not have to visit every schema. A membership of a deleted user matches nobody.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        primary_key=True,
        related_name="schemata_membership",
    )
    is_active = models.BooleanField(
        default=True, help_text="Unset to refuse this user on this tenant without deleting them."
    )
    is_staff = models.BooleanField(default=False, help_text="May use this tenant's admin.")
    is_superuser = models.BooleanField(
        default=False, help_text="Has every permission on this tenant."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "membership"

    def __str__(self) -> str:
        return f"membership of user {self.user_id}"
