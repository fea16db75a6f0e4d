"""``django.contrib.sessions.backends.db`` with sessions bound to their schema."""

from __future__ import annotations

from django.contrib.sessions.backends import db

from schemata.sessions import SchemaSessionMixin


class SessionStore(SchemaSessionMixin, db.SessionStore):
    pass
