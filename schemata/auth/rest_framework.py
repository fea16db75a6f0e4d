"""Django REST framework authentication that honours tenant memberships."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions

from schemata.auth.members import apply_membership


class TokenAuthentication(authentication.TokenAuthentication):  # type: ignore[misc]
    """DRF's ``TokenAuthentication``, refusing users the active tenant does not grant."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        member = apply_membership(user)
        if member is None:
            raise exceptions.AuthenticationFailed("User is not a member of this tenant.")
        return member, token
