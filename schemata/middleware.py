"""The middleware that activates the schema of the request's host."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase, StreamingHttpResponse

from schemata.conf import conf
from schemata.databases import Schema, normalize_host
from schemata.registry import registry
from schemata.state import _current, get_schema

_END = object()


class SchemataMiddleware:
    """Activate the schema of ``request.get_host()`` for the rest of the request.

    Put it first in ``MIDDLEWARE``: middleware before it (sessions, auth) would query
    with no schema active. Unknown hosts get a 404 unless ``SCHEMATA_FALLBACK_SCHEMA`` is set.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        schema = schema_for_request(request)
        token = _current.set(schema)
        try:
            response = self.get_response(request)
        finally:
            try:
                _end_atomic(request)
            finally:
                _current.reset(token)
        return _stream_in(schema, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        schema = schema_for_request(request)
        token = _current.set(schema)
        try:
            response = await self.get_response(request)
        finally:
            try:
                if hasattr(request, "_schemata_atomic"):
                    # Leave the transaction in the thread that entered it (process_view's).
                    await sync_to_async(_end_atomic)(request)
            finally:
                _current.reset(token)
        return _stream_in(schema, response)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        schema: Schema = request.schema  # type: ignore[attr-defined]
        if not conf.databases.atomic_requests or schema.alias in getattr(
            view_func, "_non_atomic_requests", ()
        ):
            return
        if iscoroutinefunction(view_func):
            raise RuntimeError("You cannot use ATOMIC_REQUESTS with async views.")
        atomic = transaction.atomic(using=schema.alias)
        atomic.__enter__()
        request._schemata_atomic = atomic  # type: ignore[attr-defined]

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if hasattr(request, "_schemata_atomic"):
            transaction.set_rollback(True, using=request.schema.alias)  # type: ignore[attr-defined]


class _KnownHosts:
    """Host headers that passed ``get_host()`` and name one of the settings' domains, with
    their schema: a request on one skips the header's parsing and the ALLOWED_HOSTS patterns.

    True only of the settings it was filled under: ``fresh()`` compares them at each request
    (a list changed in place too), and a new one is started when they differ, or when full (a
    client can send many spellings of one host).
    """

    __slots__ = ("databases", "allowed", "debug", "schemas")

    def __init__(self, databases: object, allowed: Sequence[str], debug: bool) -> None:
        self.databases = databases
        self.allowed = copy.copy(allowed)  # of the same type: a tuple equals no list
        self.debug = debug
        self.schemas: dict[str, Schema] = {}

    def fresh(self, databases: object) -> bool:
        return (
            self.databases is databases
            and self.allowed == settings.ALLOWED_HOSTS
            and self.debug == settings.DEBUG
        )


_known = _KnownHosts(None, [], False)
KNOWN_HOSTS = 10_000


def schema_for_request(request: HttpRequest) -> Schema:
    """Find, and set as ``request.schema``, the schema of the request's host, or raise 404."""
    global _known

    databases = conf.databases
    header: str | None = None
    # The Host header, when it is all that get_host() reads (not another header, nor a
    # request class's own rules).
    if not settings.USE_X_FORWARDED_HOST and type(request).get_host is HttpRequest.get_host:
        header = request.META.get("HTTP_HOST")
    known = _known
    fresh = known.fresh(databases)
    schema = known.schemas.get(header) if header is not None and fresh else None
    if schema is not None:
        request.schema = schema  # type: ignore[attr-defined]
        return schema
    # get_host() validates against ALLOWED_HOSTS first.
    host = normalize_host(request.get_host())
    schema = databases.domains.get(host)
    if schema is not None and header is not None:
        if not fresh or len(known.schemas) >= KNOWN_HOSTS:
            known = _known = _KnownHosts(databases, settings.ALLOWED_HOSTS, settings.DEBUG)
        known.schemas[header] = schema
    if schema is None:
        # Settings' hosts never get here: they cost no SQL, ever.
        schema = registry.schema_for_host(host)
    if schema is None:
        fallback = conf.FALLBACK_SCHEMA
        if fallback is None:
            raise Http404(f"No schema is configured for the host {host!r}.")
        schema = get_schema(fallback)
    request.schema = schema  # type: ignore[attr-defined]
    return schema


def _end_atomic(request: HttpRequest) -> None:
    atomic = request.__dict__.pop("_schemata_atomic", None)
    if atomic is not None:
        atomic.__exit__(None, None, None)


def _stream_in(schema: Schema, response: HttpResponseBase) -> HttpResponseBase:
    # A streaming body is produced after every middleware has returned: activate the schema
    # around each chunk instead.
    if isinstance(response, StreamingHttpResponse):
        content = response.streaming_content
        if response.is_async:
            response.streaming_content = _aiter_in(schema, content)  # type: ignore[arg-type]
        else:
            response.streaming_content = _iter_in(schema, content)  # type: ignore[arg-type]
    return response


def _iter_in(schema: Schema, chunks: Iterator[bytes]) -> Iterator[bytes]:
    iterator = iter(chunks)
    while True:
        token = _current.set(schema)
        try:
            chunk = next(iterator, _END)
        finally:
            _current.reset(token)
        if chunk is _END:
            return
        yield chunk  # type: ignore[misc]


async def _aiter_in(schema: Schema, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    iterator = aiter(chunks)
    while True:
        token = _current.set(schema)
        try:
            chunk = await anext(iterator, _END)
        finally:
            _current.reset(token)
        if chunk is _END:
            return
        yield chunk  # type: ignore[misc]
