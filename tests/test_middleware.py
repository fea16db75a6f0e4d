from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, AsyncRequestFactory, Client, RequestFactory, override_settings

import schemata
from schemata import expand_databases, get_current_schema, middleware
from schemata.middleware import SchemataMiddleware
from tests.testapp.models import Note

ALPHA = "alpha.example.com"
BETA = "beta.example.com"


async def aget(path: str, host: str, query: str = "") -> Any:
    """GET through AsyncClient with exactly one Host header (its factory always adds one)."""
    scope = {
        "method": "GET",
        "path": path,
        "query_string": query,
        "server": ("127.0.0.1", "80"),
        "scheme": "http",
        "headers": [(b"host", host.encode())],
    }
    return await AsyncClient().request(**scope)


def async_request(host: str) -> HttpRequest:
    request = AsyncRequestFactory().get("/")
    request.META["HTTP_HOST"] = host
    return request


def current_name() -> str | None:
    schema = get_current_schema()
    return schema.name if schema else None


def echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{request.schema.name}/{current_name()}")  # type: ignore[attr-defined]


async def aecho(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"{request.schema.name}/{current_name()}")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "host",
    [
        "alpha.example.com",
        "ALPHA.Example.Com",
        "alpha.example.com:8000",
        "alpha.example.com.",
        "www.alpha.example.com",
    ],
)
def test_the_hosts_schema_is_active_during_the_request(host: str) -> None:
    request = RequestFactory().get("/", HTTP_HOST=host)

    response = SchemataMiddleware(echo)(request)

    assert response.content == b"alpha/alpha"
    assert request.schema.name == "alpha"  # type: ignore[attr-defined]
    assert get_current_schema() is None


def test_async_requests_get_their_hosts_schema() -> None:
    request = async_request("Beta.example.com:443")
    middleware = SchemataMiddleware(aecho)

    response = asyncio.run(middleware(request))

    assert response.content == b"beta/beta"
    assert get_current_schema() is None


def test_the_previous_schema_is_restored_after_a_view_exception() -> None:
    def boom(request: HttpRequest) -> HttpResponse:
        assert current_name() == "alpha"
        raise ValueError("view failed")

    with schemata.override("beta"):
        with pytest.raises(ValueError, match="view failed"):
            SchemataMiddleware(boom)(RequestFactory().get("/", HTTP_HOST=ALPHA))

        assert current_name() == "beta"


def test_the_previous_schema_is_restored_after_an_async_view_exception() -> None:
    async def boom(request: HttpRequest) -> HttpResponse:
        raise ValueError("view failed")

    async def main() -> str | None:
        with schemata.override("beta"):
            with pytest.raises(ValueError, match="view failed"):
                await SchemataMiddleware(boom)(async_request("alpha.example.com"))
            return current_name()

    assert asyncio.run(main()) == "beta"


def test_an_unknown_host_gets_a_404_from_the_middleware() -> None:
    from django.http import Http404

    with pytest.raises(Http404, match="No schema is configured for the host 'nope.example.com'"):
        SchemataMiddleware(echo)(RequestFactory().get("/", HTTP_HOST="nope.example.com"))


@pytest.mark.django_db
def test_an_unknown_host_gets_a_404_response() -> None:
    response = Client().get("/", HTTP_HOST="nope.example.com")

    assert response.status_code == 404


def test_a_host_outside_allowed_hosts_gets_a_400() -> None:
    response = Client().get("/", HTTP_HOST="evil.test")

    assert response.status_code == 400


class TestKnownHosts:
    """A Host header that passed get_host() once is not parsed again, while the settings
    get_host() reads stay as they were."""

    @pytest.fixture
    def parsed(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The hosts get_host() returned (it is Django's own, counted)."""
        hosts: list[str] = []
        get_host = HttpRequest.get_host

        def counted(request: HttpRequest) -> str:
            hosts.append(get_host(request))
            return hosts[-1]

        monkeypatch.setattr(HttpRequest, "get_host", counted)
        monkeypatch.setattr(middleware, "_known", middleware._KnownHosts(None, [], False))
        return hosts

    def serve(self, host: str, forwarded: str | None = None) -> bytes:
        request = RequestFactory().get("/", HTTP_HOST=host)
        if forwarded is not None:
            request.META["HTTP_X_FORWARDED_HOST"] = forwarded
        return SchemataMiddleware(echo)(request).content  # type: ignore[no-any-return]

    @pytest.mark.parametrize("allowed", [[".example.com"], (".example.com",)])
    def test_a_host_served_before_is_not_parsed_again(
        self, parsed: list[str], allowed: Sequence[str]
    ) -> None:
        with override_settings(ALLOWED_HOSTS=allowed):
            served = [self.serve("Alpha.example.com:8000") for _ in range(3)]

        assert served == [b"alpha/alpha"] * 3
        assert parsed == ["Alpha.example.com:8000"]

    def test_a_host_taken_out_of_allowed_hosts_is_refused(self, parsed: list[str]) -> None:
        self.serve(ALPHA)

        with override_settings(ALLOWED_HOSTS=[BETA]), pytest.raises(DisallowedHost):
            self.serve(ALPHA)

    def test_allowed_hosts_changed_in_place_is_seen(self, parsed: list[str]) -> None:
        with override_settings(ALLOWED_HOSTS=[".example.com"]):
            self.serve(ALPHA)
            settings.ALLOWED_HOSTS.remove(".example.com")
            settings.ALLOWED_HOSTS.append(BETA)

            with pytest.raises(DisallowedHost):
                self.serve(ALPHA)

    def test_a_forwarded_host_is_read_at_every_request(self, parsed: list[str]) -> None:
        with override_settings(USE_X_FORWARDED_HOST=True):
            assert self.serve(ALPHA) == b"alpha/alpha"
            assert self.serve(ALPHA, forwarded=BETA) == b"beta/beta"

        assert parsed == [ALPHA, BETA]

    def test_a_request_class_with_its_own_get_host_is_asked_every_time(
        self, parsed: list[str]
    ) -> None:
        class Forwarded(WSGIRequest):
            def get_host(self) -> str:
                return str(self.META["HTTP_X_ORIGINAL_HOST"])

        served = []
        for original in (ALPHA, BETA):  # the Host header says alpha both times
            request = Forwarded(RequestFactory().get("/", HTTP_HOST=ALPHA).environ)
            request.META["HTTP_X_ORIGINAL_HOST"] = original
            served.append(SchemataMiddleware(echo)(request).content)

        assert served == [b"alpha/alpha", b"beta/beta"]

    def test_the_hosts_kept_are_bounded(
        self, parsed: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(middleware, "KNOWN_HOSTS", 2)

        for port in range(5):
            assert self.serve(f"{ALPHA}:{port}") == b"alpha/alpha"

        assert len(middleware._known.schemas) <= 2
        assert self.serve(f"{ALPHA}:4") == b"alpha/alpha"
        assert len(parsed) == 5  # the last spelling is still known


@override_settings(SCHEMATA_FALLBACK_SCHEMA="beta")
def test_an_unknown_host_uses_the_fallback_schema_when_set() -> None:
    response = SchemataMiddleware(echo)(RequestFactory().get("/", HTTP_HOST="nope.example.com"))

    assert response.content == b"beta/beta"


@pytest.mark.usefixtures("schemas")
class TestThroughTheClient:
    def test_each_host_sees_only_its_own_rows(self) -> None:
        with schemata.override("alpha"):
            Note.objects.create(title="a1")
        with schemata.override("beta"):
            Note.objects.create(title="b1")

        alpha = Client().get("/", HTTP_HOST=ALPHA).json()
        beta = Client().get("/", HTTP_HOST=BETA).json()

        assert alpha == {
            "schema": "alpha",
            "active": "alpha",
            "config": {"plan": "pro", "colour": "red"},
            "notes": ["a1"],
        }
        assert beta == {
            "schema": "beta",
            "active": "beta",
            "config": {"plan": "free"},
            "notes": ["b1"],
        }

    def test_async_views_see_only_their_hosts_rows(self) -> None:
        with schemata.override("beta"):
            Note.objects.create(title="b1")

        response = async_to_sync(aget)("/async/", "beta.example.com")

        assert response.json() == {"schema": "beta", "active": "beta", "notes": ["b1"]}

    def test_the_session_is_saved_in_the_hosts_schema(self) -> None:
        response = Client().get("/session/", HTTP_HOST=ALPHA)

        key = response.cookies["sessionid"].value
        assert Session.objects.using("alpha").filter(session_key=key).exists()
        assert not Session.objects.using("default").filter(session_key=key).exists()

    @override_settings(
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "schemata.middleware.SchemataMiddleware",
        ]
    )
    def test_session_middleware_before_schemata_saves_sessions_in_default(self) -> None:
        # The reason for system check schemata.E005.
        response = Client().get("/session/", HTTP_HOST=ALPHA)

        key = response.cookies["sessionid"].value
        assert Session.objects.using("default").filter(session_key=key).exists()
        assert not Session.objects.using("alpha").filter(session_key=key).exists()

    def test_a_streaming_body_is_produced_with_the_schema_active(self) -> None:
        with schemata.override("alpha"):
            Note.objects.create(title="streamed")

        response = Client().get("/stream/", HTTP_HOST=ALPHA)

        assert get_current_schema() is None
        assert b"".join(response.streaming_content) == b"alpha:streamed"  # type: ignore[attr-defined]

    def test_an_async_streaming_body_is_produced_with_the_schema_active(self) -> None:
        with schemata.override("beta"):
            Note.objects.create(title="streamed")

        async def main() -> bytes:
            response = await aget("/astream/", "beta.example.com")
            assert get_current_schema() is None
            return b"".join([chunk async for chunk in response.streaming_content])

        assert async_to_sync(main)() == b"beta:streamed"


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    """Turn on ATOMIC_REQUESTS for the base database, as a user's settings would."""
    base = {**connections.settings["default"], "ATOMIC_REQUESTS": True}
    databases = expand_databases({"default": base}, settings.SCHEMATA_DOMAINS)
    with pytest.warns(UserWarning, match="Overriding setting DATABASES"):
        override = override_settings(DATABASES=databases)
        override.enable()
    yield
    override.disable()


@pytest.fixture
def clean_alpha(transactional_db: None) -> Iterator[None]:
    yield
    Note.objects.using("alpha").all().delete()
    connections["alpha"].close()


@pytest.mark.usefixtures("atomic_requests", "clean_alpha")
class TestAtomicRequests:
    def test_the_view_runs_in_a_transaction_on_the_schema_alias_only(self) -> None:
        response = Client().get("/notes/", {"title": "kept"}, HTTP_HOST=ALPHA)

        assert response.json()["in_atomic"] == {"default": False, "alpha": True}
        assert list(Note.objects.using("alpha").values_list("title", flat=True)) == ["kept"]

    def test_async_requests_run_sync_views_in_a_transaction_on_the_schema_alias(self) -> None:
        response = async_to_sync(aget)("/notes/", "alpha.example.com", "title=async")

        assert response.json()["in_atomic"] == {"default": False, "alpha": True}
        assert not connections["alpha"].in_atomic_block
        assert list(Note.objects.using("alpha").values_list("title", flat=True)) == ["async"]

    def test_a_failing_view_rolls_back_its_writes(self) -> None:
        client = Client(raise_request_exception=False)

        response = client.get("/notes/", {"title": "lost", "fail": "1"}, HTTP_HOST=ALPHA)

        assert response.status_code == 500
        assert not connections["alpha"].in_atomic_block
        assert Note.objects.using("alpha").count() == 0

    def test_a_drf_view_that_handles_its_error_rolls_back_its_writes(self) -> None:
        response = Client().get("/drf/reject/", {"title": "half-written"}, HTTP_HOST=ALPHA)

        assert response.status_code == 400
        assert response.json() == {"title": "rejected after writing"}
        assert Note.objects.using("alpha").count() == 0

    def test_non_atomic_requests_views_are_left_alone(self) -> None:
        response = Client().get("/notes/non-atomic/", {"title": "free"}, HTTP_HOST=ALPHA)

        assert response.json()["in_atomic"] == {"default": False, "alpha": False}

    def test_async_views_are_refused_as_django_does(self) -> None:
        with pytest.raises(RuntimeError, match="You cannot use ATOMIC_REQUESTS with async views"):
            Client().get("/notes/async/", {"title": "x"}, HTTP_HOST=ALPHA)
