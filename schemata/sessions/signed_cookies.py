"""``django.contrib.sessions.backends.signed_cookies`` with sessions bound to their schema."""

from __future__ import annotations

from django.contrib.sessions.backends import signed_cookies

from schemata.sessions import SchemaSessionMixin


class SessionStore(SchemaSessionMixin, signed_cookies.SessionStore):
    pass
