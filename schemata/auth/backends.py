"""An authentication backend that lets shared users in only on the tenants they belong to."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from schemata.auth.members import apply_membership


class MembershipBackend(ModelBackend):
    """``ModelBackend`` that refuses a shared user on a tenant that grants them no membership.

    On a tenant, ``is_staff`` and ``is_superuser`` are the membership's, for the admin and for
    permission checks; with users kept per tenant it behaves exactly as ``ModelBackend``.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        user = super().authenticate(request, username=username, password=password, **kwargs)
        return None if user is None else apply_membership(user)

    def get_user(self, user_id: Any) -> Any:
        user = super().get_user(user_id)
        return None if user is None else apply_membership(user)

    # Django's own async versions do not go through the two methods above.
    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        return await sync_to_async(self.authenticate)(
            request, username=username, password=password, **kwargs
        )

    async def aget_user(self, user_id: Any) -> Any:
        return await sync_to_async(self.get_user)(user_id)
