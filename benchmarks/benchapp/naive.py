"""What a straightforward schema-per-alias setup does: every schema listed in DATABASES.

A middleware maps the host to an alias and keeps it in a ContextVar; a router returns it.
The cost that grows with the number of schemas is Django's own: it walks every alias of
``DATABASES`` several times per request.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse

_alias: ContextVar[str | None] = ContextVar("naive_alias", default=None)


class NaiveSchemaMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.aliases = {
            host: entry["schema_name"] for host, entry in settings.BENCH_DOMAINS.items()
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        alias = self.aliases.get(request.get_host().partition(":")[0].lower())
        if alias is None:
            raise Http404("unknown host")
        token = _alias.set(alias)
        try:
            return self.get_response(request)
        finally:
            _alias.reset(token)


class NaiveSchemaRouter:
    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return _alias.get()

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str | None:
        return _alias.get()
