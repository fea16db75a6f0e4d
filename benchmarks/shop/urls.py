"""The measured view, and the pool statistics of the worker that answers."""

from __future__ import annotations

import dataclasses
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from benchmarks.shop.models import Item


def items(request: HttpRequest) -> HttpResponse:
    # One query; the names ("t7-1"...) tell which schema answered.
    return HttpResponse(",".join(item.name for item in Item.objects.all()[:5]))


def pool_stats(request: HttpRequest) -> JsonResponse:
    if "schemata" not in settings.INSTALLED_APPS:
        raise Http404("not a django-schemata configuration")
    from schemata.pool import _pools

    pool = _pools.get("default")
    stats = dataclasses.asdict(pool.stats) if pool else {}
    return JsonResponse({"pid": os.getpid(), "size": pool.size if pool else 0, **stats})


urlpatterns = [path("", items), path("_pool/", pool_stats)]
