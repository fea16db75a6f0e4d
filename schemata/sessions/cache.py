"""``django.contrib.sessions.backends.cache`` with sessions bound to their schema."""

from __future__ import annotations

from django.contrib.sessions.backends import cache

from schemata.sessions import SchemaSessionMixin


class SessionStore(SchemaSessionMixin, cache.SessionStore):
    pass
