from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.contrib.auth import authenticate, login
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

import schemata
from tests.testapp.models import Note


def _schema_name() -> str | None:
    schema = schemata.get_current_schema()
    return schema.name if schema else None


def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "schema": request.schema.name,  # type: ignore[attr-defined]
            "active": _schema_name(),
            "config": dict(request.schema.config),  # type: ignore[attr-defined]
            "notes": sorted(Note.objects.values_list("title", flat=True)),
        }
    )


async def awhoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "schema": request.schema.name,  # type: ignore[attr-defined]
            "active": _schema_name(),
            "notes": sorted([n.title async for n in Note.objects.all()]),
        }
    )


@csrf_exempt
def create_note(request: HttpRequest) -> JsonResponse:
    note = Note.objects.create(title=request.GET["title"])
    assert note._state.db is not None  # set once saved
    in_atomic = {
        alias: connections[alias].in_atomic_block for alias in ("default", note._state.db)
    }
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after writing")
    return JsonResponse({"id": note.pk, "db": note._state.db, "in_atomic": in_atomic})


def remember(request: HttpRequest) -> HttpResponse:
    request.session["seen"] = request.GET.get("value", "yes")
    return HttpResponse(request.session.session_key or "")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[str]:
        yield f"{_schema_name()}:"
        yield ",".join(Note.objects.values_list("title", flat=True))

    return StreamingHttpResponse(chunks())


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[str]:
        yield f"{_schema_name()}:"
        yield ",".join([n.title async for n in Note.objects.all()])

    return StreamingHttpResponse(chunks())


@transaction.non_atomic_requests(using="alpha")
def create_note_non_atomic(request: HttpRequest) -> JsonResponse:
    return create_note(request)


async def acreate_note(request: HttpRequest) -> JsonResponse:
    note = await Note.objects.acreate(title=request.GET["title"])
    return JsonResponse({"id": note.pk})


class RejectAfterWriting(APIView):  # type: ignore[misc]  # DRF has no type information
    """A DRF view that writes, then rejects the request with a handled error (a 400)."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    renderer_classes = [JSONRenderer]

    def get(self, request: Request) -> JsonResponse:
        Note.objects.create(title=request.query_params["title"])
        raise ValidationError({"title": "rejected after writing"})


@csrf_exempt
def log_in(request: HttpRequest) -> JsonResponse:
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is not None:
        login(request, user)
    return JsonResponse({"logged_in": user is not None})


def _describe(user: Any) -> dict[str, Any]:
    if user is None or not user.is_authenticated:
        return {"user": None}
    return {"user": user.username, "is_staff": user.is_staff, "is_superuser": user.is_superuser}


def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_describe(request.user))


class ApiMe(APIView):  # type: ignore[misc]  # DRF has no type information
    """Who DRF authenticated (token or session)."""

    def get(self, request: Request) -> JsonResponse:
        return JsonResponse(_describe(request.user))
