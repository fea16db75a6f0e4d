"""``django.contrib.sessions.backends.cached_db`` with sessions bound to their schema."""

from __future__ import annotations

from django.contrib.sessions.backends import cached_db

from schemata.sessions import SchemaSessionMixin


class SessionStore(SchemaSessionMixin, cached_db.SessionStore):
    pass
