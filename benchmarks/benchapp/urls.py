"""The measured view: one ORM query, routed to wherever the configuration sends it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from benchmarks.benchapp.models import Item


def items(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(list(Item.objects.all()[:5]))))


urlpatterns = [path("", items)]
