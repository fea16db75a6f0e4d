"""Users, sessions, tokens and the admin log never cross tenants, in both layouts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

import schemata
from schemata.auth.backends import MembershipBackend
from schemata.auth.models import Membership
from schemata.sessions import SCHEMA_SESSION_KEY
from tests.conftest import drop_fresh, forget_schema_connections
from tests.test_checks import check_output
from tests.test_commands_migrate import run

SHARED = ["contenttypes", "auth", "sessions"]
ONE = "fresh1.example.com"
TWO = "fresh2.example.com"


@pytest.fixture
def shared_users(transactional_db: None) -> Iterator[None]:
    """The README's layout: users and sessions shared; fresh1 and fresh2 migrated as tenants."""
    drop_fresh()
    with override_settings(SCHEMATA_SHARED_APPS=SHARED):
        run("migrate_schemata", "--schema", "fresh1", "--schema", "fresh2", interactive=False)
        yield
        forget_schema_connections()
    drop_fresh()
    User.objects.using("default").all().delete()


def member(username: str, *schemas: str, **flags: bool) -> User:
    """A shared user (password 'pw') with a membership on each of ``schemas``."""
    user = User.objects.create_user(username, password="pw")
    for name in schemas:
        Membership.objects.using(name).create(user_id=user.pk, **flags)
    return user


def logged_in(host: str, username: str = "ann") -> Client:
    client = Client(HTTP_HOST=host)
    response = client.post("/login/", {"username": username, "password": "pw"})
    assert response.json() == {"logged_in": True}
    return client


@pytest.mark.usefixtures("shared_users")
class TestSharedUsers:
    def test_a_session_made_on_one_tenant_is_anonymous_on_another(self) -> None:
        member("ann", "fresh1", "fresh2")
        client = logged_in(ONE)

        cookie = {"cookie": f"sessionid={client.cookies['sessionid'].value}"}

        on_two = Client().get("/me/", HTTP_HOST=TWO, headers=cookie).json()  # the cookie, copied
        on_one = Client().get("/me/", HTTP_HOST=ONE, headers=cookie).json()

        assert on_two == {"user": None}
        assert on_one["user"] == "ann"  # the session is left as it was

    def test_a_user_logs_in_only_on_the_tenants_that_grant_them(self) -> None:
        member("ann", "fresh1")

        refused = Client(HTTP_HOST=TWO).post("/login/", {"username": "ann", "password": "pw"})

        assert refused.json() == {"logged_in": False}
        assert logged_in(ONE).get("/me/").json()["user"] == "ann"

    def test_a_revoked_membership_ends_the_users_sessions_on_that_tenant(self) -> None:
        user = member("ann", "fresh1")
        client = logged_in(ONE)

        Membership.objects.using("fresh1").filter(pk=user.pk).update(is_active=False)

        assert client.get("/me/").json() == {"user": None}

    def test_staff_and_superuser_come_from_the_tenant_not_the_user_row(self) -> None:
        ann = member("ann", "fresh1", is_staff=True, is_superuser=True)
        Membership.objects.using("fresh2").create(user_id=ann.pk)
        User.objects.filter(pk=member("bob", "fresh2").pk).update(is_superuser=True)

        assert logged_in(ONE).get("/me/").json() == {
            "user": "ann",
            "is_staff": True,
            "is_superuser": True,
        }
        assert logged_in(TWO).get("/me/").json()["is_superuser"] is False
        assert logged_in(TWO, "bob").get("/me/").json()["is_superuser"] is False

    def test_saving_a_user_loaded_on_a_tenant_keeps_its_global_flags(self) -> None:
        ann = member("ann", "fresh1", is_superuser=True)

        with schemata.override("fresh1"):
            user = MembershipBackend().get_user(ann.pk)
            assert user is not None
            user.first_name = "Ann"
            user.save()

        assert user.is_superuser is True
        row = User.objects.using("default").get(pk=ann.pk)
        assert (row.first_name, row.is_superuser) == ("Ann", False)

    def test_the_async_paths_check_the_membership_too(self) -> None:
        ann = member("ann", "fresh1")
        backend = MembershipBackend()

        with schemata.override("fresh2"):
            assert async_to_sync(backend.aget_user)(ann.pk) is None
            assert (
                async_to_sync(backend.aauthenticate)(None, username="ann", password="pw") is None
            )
        with schemata.override("fresh1"):
            assert async_to_sync(backend.aget_user)(ann.pk) == ann

    def test_createsuperuser_on_a_tenant_makes_a_superuser_of_that_tenant_only(self) -> None:
        os.environ["DJANGO_SUPERUSER_PASSWORD"] = "pw"
        try:
            run(
                "each_schema", "--schema", "fresh1", "createsuperuser",
                "--noinput", "--username", "boss", "--email", "boss@example.com",
            )  # fmt: skip
        finally:
            del os.environ["DJANGO_SUPERUSER_PASSWORD"]

        assert logged_in(ONE, "boss").get("/me/").json()["is_superuser"] is True
        assert not Membership.objects.using("fresh2").exists()
        refused = Client(HTTP_HOST=TWO).post("/login/", {"username": "boss", "password": "pw"})
        assert refused.json() == {"logged_in": False}

    def test_a_drf_token_authenticates_only_on_its_tenant(self) -> None:
        ann = member("ann", "fresh1", "fresh2")
        with schemata.override("fresh1"):
            token = Token.objects.create(user=ann)
        auth = {"authorization": f"Token {token.key}"}

        on_one = Client(HTTP_HOST=ONE).get("/drf/me/", headers=auth)
        on_two = Client(HTTP_HOST=TWO).get("/drf/me/", headers=auth)

        assert on_one.json()["user"] == "ann"
        assert on_two.status_code == 401

    def test_a_drf_token_of_a_user_the_tenant_no_longer_grants_is_refused(self) -> None:
        ann = member("ann", "fresh1", is_staff=True)
        with schemata.override("fresh1"):
            token = Token.objects.create(user=ann)
        auth = {"authorization": f"Token {token.key}"}
        assert Client(HTTP_HOST=ONE).get("/drf/me/", headers=auth).json()["is_staff"] is True

        Membership.objects.using("fresh1").filter(pk=ann.pk).delete()

        response = Client(HTTP_HOST=ONE).get("/drf/me/", headers=auth)
        assert response.status_code == 401
        assert response.json() == {"detail": "User is not a member of this tenant."}

    def test_the_admin_log_stays_in_the_tenant_it_was_written_on(self) -> None:
        member("ann", "fresh1", "fresh2", is_staff=True, is_superuser=True)
        one = logged_in(ONE)

        added = one.post("/admin/testapp/note/add/", {"title": "alpha's secret plan"})

        assert added.status_code == 302
        assert LogEntry.objects.using("fresh1").count() == 1
        assert LogEntry.objects.using("fresh2").count() == 0
        assert "alpha&#x27;s secret plan" in one.get("/admin/").content.decode()
        assert "secret plan" not in logged_in(TWO).get("/admin/").content.decode()


class TestUsersPerTenant:
    pytestmark = pytest.mark.usefixtures("schemas")

    def test_a_login_on_one_tenant_is_unknown_on_another(self) -> None:
        with schemata.override("alpha"):
            User.objects.create_user("ann", password="pw")
        client = logged_in("alpha.example.com")

        assert client.get("/me/").json()["user"] == "ann"
        assert client.get("/me/", HTTP_HOST="beta.example.com").json() == {"user": None}

    def test_the_membership_backend_ignores_memberships_when_users_are_per_tenant(self) -> None:
        with schemata.override("alpha"):
            ann = User.objects.create_user("ann", password="pw", is_staff=True)

            assert MembershipBackend().get_user(ann.pk) == ann
            assert not Membership.objects.exists()


ENGINES = ["db", "cached_db", "cache", "file", "signed_cookies"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, schemas: None, tmp_path: Path) -> Iterator[type]:
    with override_settings(SESSION_FILE_PATH=str(tmp_path)):
        yield import_module(f"schemata.sessions.{request.param}").SessionStore


class TestSessionEngines:
    def saved_on_alpha(self, engine: type) -> str:
        with schemata.override("alpha"):
            store = engine()
            store["cart"] = ["alpha's"]
            store.save()
        return store.session_key  # type: ignore[no-any-return]

    def test_a_session_is_read_back_on_its_own_schema(self, engine: type) -> None:
        key = self.saved_on_alpha(engine)

        with schemata.override("alpha"):
            store = engine(key)
            assert store["cart"] == ["alpha's"]
            assert store[SCHEMA_SESSION_KEY] == "alpha"

    def test_a_session_is_empty_on_another_schema_and_gets_a_new_key(self, engine: type) -> None:
        key = self.saved_on_alpha(engine)

        with schemata.override("beta"):
            store = engine(key)
            assert "cart" not in store
            store["cart"] = ["beta's"]
            store.save()
            assert store.session_key != key
        with schemata.override("alpha"):
            assert engine(key)["cart"] == ["alpha's"]

    def test_a_session_made_with_no_schema_is_empty_on_a_schema(self, engine: type) -> None:
        store = engine()
        store["cart"] = ["nobody's"]
        store.save()

        with schemata.override("alpha"):
            assert "cart" not in engine(store.session_key)

    def test_the_async_api_binds_sessions_too(self, engine: type) -> None:
        async def save() -> str:
            store = engine()
            await store.aset("cart", ["alpha's"])
            await store.asave()
            return store.session_key  # type: ignore[no-any-return]

        async def read(key: str) -> object:
            return await engine(key).aget("cart")

        with schemata.override("alpha"):
            key = async_to_sync(save)()
            assert async_to_sync(read)(key) == ["alpha's"]
        with schemata.override("beta"):
            assert async_to_sync(read)(key) is None


@pytest.mark.django_db
class TestChecks:
    @override_settings(
        SCHEMATA_SHARED_APPS=SHARED, SESSION_ENGINE="django.contrib.sessions.backends.db"
    )
    def test_shared_sessions_without_a_bound_engine_are_an_error(self) -> None:
        assert (
            "?: (schemata.E013) Sessions are shared by every tenant and SESSION_ENGINE "
            "('django.contrib.sessions.backends.db') does not bind them to one: a session made "
            "on one tenant is valid on all." in check_output()
        )

    @override_settings(
        SCHEMATA_SHARED_APPS=SHARED,
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend"],
    )
    def test_shared_users_with_a_backend_blind_to_memberships_are_an_error(self) -> None:
        assert (
            "?: (schemata.E014) Users are shared by every tenant, and "
            "'django.contrib.auth.backends.ModelBackend' let(s) any user log in on any tenant."
            in check_output()
        )

    @override_settings(SCHEMATA_SHARED_APPS=SHARED, AUTHENTICATION_BACKENDS=[])
    def test_shared_users_with_no_membership_backend_are_an_error(self) -> None:
        assert (
            "?: (schemata.E014) Users are shared by every tenant, and nothing limits them to "
            "the tenants that grant them access." in check_output()
        )

    @override_settings(SCHEMATA_SHARED_APPS=SHARED)
    def test_shared_users_and_sessions_with_the_guards_pass(self) -> None:
        assert "schemata.E01" not in check_output()

    @override_settings(SCHEMATA_SHARED_APPS=["contenttypes", "admin"])
    def test_a_shared_admin_with_users_per_tenant_is_told_to_stay_a_tenant_app(self) -> None:
        assert (
            "admin.LogEntry.user: (schemata.E010) admin.LogEntry.user (shared, in public) points "
            "to auth.User, whose tables are in each schema.\n\tHINT: Remove 'admin' from "
            "SCHEMATA_SHARED_APPS: each tenant then keeps its own admin log, which may point to "
            "shared users." in check_output()
        )

    @override_settings(SCHEMATA_SHARED_APPS=[*SHARED, "admin", "authtoken"])
    def test_a_shared_admin_log_and_shared_tokens_are_warned_about(self) -> None:
        from io import StringIO

        err = StringIO()
        call_command("check", stderr=err)

        assert "?: (schemata.W002) The admin app is shared" in err.getvalue()
        assert "?: (schemata.W004) rest_framework.authtoken is shared" in err.getvalue()
