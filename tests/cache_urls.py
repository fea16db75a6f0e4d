from __future__ import annotations

from itertools import count

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page

_renders = count()


def greeting(request: HttpRequest) -> HttpResponse:
    """Cache the first greeting under one key, as a view with a per-site value would."""
    schema = request.schema.name  # type: ignore[attr-defined]
    return HttpResponse(cache.get_or_set("greeting", f"hello from {schema}"))


@cache_page(60)
def page(request: HttpRequest) -> HttpResponse:
    """Say which render this is, so a page served from the cache shows an old number."""
    return HttpResponse(f"{request.schema.name} #{next(_renders)}")  # type: ignore[attr-defined]


urlpatterns = [
    path("greeting/", greeting),
    path("page/", page),
]
