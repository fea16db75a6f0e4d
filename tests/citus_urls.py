"""The active tenant's orders, each with its shared plan (a join with a reference table on
Citus); a POST adds one."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from schemata import get_current_schema
from tests.citus_shared.models import Plan
from tests.citus_tenant.models import Order


def orders(request: HttpRequest) -> JsonResponse:
    schema = get_current_schema()
    assert schema is not None
    if request.method == "POST":
        Order.objects.create(title=f"{schema.name}-new", plan=Plan.objects.get(name="gold"))
    rows = Order.objects.select_related("plan").order_by("id")
    return JsonResponse(
        {"schema": schema.name, "orders": [[order.title, order.plan.name] for order in rows]}
    )


urlpatterns = [path("orders/", orders)]
