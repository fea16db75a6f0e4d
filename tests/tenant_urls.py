"""Views that tell which process served a request, for the multi-process tenant tests."""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, JsonResponse
from django.urls import path

from schemata.registry import registry


def who(request: HttpRequest) -> JsonResponse:
    # A little work, so that concurrent requests spread over the workers.
    time.sleep(float(request.GET.get("sleep", 0)))
    return JsonResponse({"pid": os.getpid(), "schema": request.schema.name})  # type: ignore[attr-defined]


def stats(request: HttpRequest) -> JsonResponse:
    time.sleep(float(request.GET.get("sleep", 0)))
    return JsonResponse(
        {"pid": os.getpid(), "checks": registry.stats.checks, "loads": registry.stats.loads}
    )


def not_found(request: HttpRequest, exception: Exception) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()}, status=404)


urlpatterns = [path("", who), path("registry/", stats)]
handler404 = not_found
