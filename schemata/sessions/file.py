"""``django.contrib.sessions.backends.file`` with sessions bound to their schema."""

from __future__ import annotations

from django.contrib.sessions.backends import file

from schemata.sessions import SchemaSessionMixin


class SessionStore(SchemaSessionMixin, file.SessionStore):
    pass
