from __future__ import annotations

import os
from collections.abc import Iterator

import environ
import psycopg
import pytest

TEST_DB = f"schemata_plugin_{os.getpid()}"

SETTINGS = f"""
import environ
from schemata import expand_databases

env = environ.Env()
SECRET_KEY = "x"
USE_TZ = True
ALLOWED_HOSTS = [".example.com"]
ROOT_URLCONF = "urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "schemata",
    "schemata.auth",
    "shop",
]
MIDDLEWARE = [
    "schemata.middleware.SchemataMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASE_ROUTERS = ["schemata.routers.SchemataRouter"]
SCHEMATA_SHARED_APPS = ["contenttypes", "auth", "sessions"]
SESSION_ENGINE = "schemata.sessions.db"
AUTHENTICATION_BACKENDS = ["schemata.auth.backends.MembershipBackend"]
SCHEMATA_DOMAINS = {{
    "alpha.example.com": {{"schema_name": "alpha"}},
    "beta.example.com": {{"schema_name": "beta"}},
}}
DATABASES = expand_databases(
    {{"default": {{**env.db(), "TEST": {{"NAME": "{TEST_DB}"}}}}}}, SCHEMATA_DOMAINS
)
"""

MODELS = """
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
    owner = models.ForeignKey("auth.User", null=True, on_delete=models.CASCADE)
"""

MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
                (
                    "owner",
                    models.ForeignKey(
                        null=True, on_delete=models.deletion.CASCADE, to="auth.user"
                    ),
                ),
            ],
        ),
    ]
"""

URLS = """
from django.http import HttpResponse
from django.urls import path

import schemata
from shop.models import Item


def home(request):
    return HttpResponse(f"{schemata.get_current_schema().name}:{Item.objects.count()}")


def me(request):
    user = request.user
    return HttpResponse(f"{user.username}:{user.is_superuser}" if user.is_authenticated else "-")


urlpatterns = [path("", home), path("me/", me)]
"""

CONFTEST = """
from django.db.models.signals import pre_migrate


def pytest_configure(config):
    open("migrated.txt", "w").close()

    def record(using, **kwargs):
        with open("migrated.txt", "a") as log:
            log.write(using + "\\n")

    pre_migrate.connect(record, weak=False)
"""

TESTS = """
import factory
import pytest
from django.core.management import call_command
from django.test import TestCase

import schemata
from schemata.testing import SchemataTestCase, SchemataTransactionTestCase
from shop.models import Item


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item

    name = factory.Sequence(lambda n: f"item {n}")


def count(alias):
    return Item.objects.using(alias).count()


def test_schema_fixture_activates_the_first_schema(schema):
    Item.objects.create(name="one")
    assert schema.name == "alpha"
    assert count("alpha") == 1


def test_writes_of_the_previous_test_were_rolled_back(schema):
    assert count("alpha") == 0


@pytest.mark.django_db
def test_any_schema_touched_in_a_db_test_is_isolated():
    with schemata.override("beta"):
        Item.objects.create(name="beta")
    assert count("beta") == 1


@pytest.mark.django_db
def test_so_the_next_test_sees_none_of_it():
    assert count("beta") == 0


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_commit():
    with schemata.override("alpha"):
        ItemFactory()
    assert count("alpha") == 1


@pytest.mark.django_db(transaction=True)
def test_and_are_flushed_after():
    assert count("alpha") == 0


@pytest.mark.schema("beta")
def test_the_schema_marker_chooses_the_schema(schema, schema_client):
    ItemFactory.create_batch(2)
    response = schema_client.get("/")
    assert response.content == b"beta:2"
    assert count("beta") == 2
    assert count("alpha") == 0


def test_every_schema_runs_once_per_schema(every_schema):
    assert schemata.get_current_schema() is every_schema
    assert count(every_schema.alias) == 0


def test_a_test_without_the_database_is_left_alone():
    assert schemata.get_current_schema() is None


class ItemTests(SchemataTestCase):
    schema = "alpha"

    @classmethod
    def setUpTestData(cls):
        with schemata.override("alpha"):
            ItemFactory(name="class-wide")

    def test_sees_class_data_and_writes(self):
        ItemFactory(name="mine")
        assert count("alpha") == 2
        assert self.client.get("/").content == b"alpha:2"

    def test_writes_of_other_tests_are_gone(self):
        assert list(Item.objects.values_list("name", flat=True)) == ["class-wide"]


@pytest.mark.django_db
def test_class_data_is_gone_after_the_class():
    assert count("alpha") == 0


@pytest.mark.django_db
def test_shared_rows_written_through_one_schema_are_seen_through_every_alias():
    from django.contrib.auth.models import User

    with schemata.override("alpha"):
        ann = User.objects.create(username="ann")
    with schemata.override("beta"):
        Item.objects.create(name="hers", owner=ann)
        assert User.objects.get(username="ann") == ann
    assert User.objects.using("default").filter(username="ann").exists()
    assert Item.objects.using("beta").get().owner == ann
    assert count("alpha") == 0


@pytest.mark.django_db
def test_closing_a_schema_connection_leaves_the_tests_own_alone():
    from django.contrib.auth.models import User
    from django.db import connections

    with schemata.override("alpha"):
        User.objects.create(username="dee")
    connections["alpha"].close()

    assert User.objects.using("default").filter(username="dee").exists()


@pytest.mark.django_db
def test_and_are_rolled_back_with_the_test():
    from django.contrib.auth.models import User

    assert not User.objects.using("beta").exists()


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_with_rows_pointing_to_shared_rows_are_flushed():
    from django.contrib.auth.models import User

    with schemata.override("alpha"):
        Item.objects.create(name="owned", owner=User.objects.create(username="bob"))
    assert count("alpha") == 1


@pytest.mark.django_db(transaction=True)
def test_so_the_next_transactional_test_starts_empty():
    from django.contrib.auth.models import User

    assert count("alpha") == 0
    assert not User.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_atomic_guard_is_on():
    from django.db import transaction

    with pytest.raises(schemata.TransactionMismatch):
        with transaction.atomic(), schemata.override("alpha"):
            Item.objects.count()


class CommittingItemTests(SchemataTransactionTestCase):
    schema = "alpha"

    def test_commits_rows_pointing_to_shared_rows(self):
        from django.contrib.auth.models import User

        Item.objects.create(name="committed", owner=User.objects.create(username="carl"))
        assert count("alpha") == 1
        assert self.client.get("/").content == b"alpha:1"


@pytest.mark.django_db
def test_which_are_flushed_after_the_test():
    from django.contrib.auth.models import User

    assert count("alpha") == 0
    assert not User.objects.exists()


@pytest.mark.schema("beta")
def test_a_logged_in_client_for_the_schema(schema, admin_user, schema_client):
    schema_client.force_login(admin_user)

    assert schema_client.get("/me/").content == b"admin:True"
    assert schema_client.get("/me/", HTTP_HOST="alpha.example.com").content == b"-"
"""


CASES = """
import threading

import pytest
from django.contrib.auth.models import User
from django.db import connections

import schemata
from schemata.testing import SchemataTestCase, SchemataTransactionTestCase
from shop.models import Item


def committed(alias):
    \"\"\"The rows of ``alias`` that a connection of another thread sees.\"\"\"
    counts = []

    def count():
        try:
            counts.append(Item.objects.using(alias).count())
        finally:
            connections.close_all()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join()
    return counts[0]


class ClassDataTests(SchemataTestCase):
    @classmethod
    def setUpTestData(cls):
        Item.objects.using("alpha").create(name="class-wide")

    def test_a_schema_first_used_in_a_test_is_under_its_transaction(self):
        Item.objects.using("beta").create(name="mine")

        assert Item.objects.using("beta").count() == 1
        assert committed("beta") == 0

    def test_so_the_next_test_sees_only_the_class_data(self):
        assert Item.objects.using("beta").count() == 0
        assert list(Item.objects.using("alpha").values_list("name", flat=True)) == [
            "class-wide"
        ]


@pytest.mark.django_db
def test_the_class_data_is_rolled_back_after_the_class():
    assert Item.objects.using("alpha").count() == 0
    assert Item.objects.using("beta").count() == 0


class DurableTests(SchemataTestCase):
    def test_a_durable_block_on_a_schema_opens_inside_the_test(self):
        with schemata.override("alpha"), schemata.atomic(durable=True):
            Item.objects.create(name="durable")

        assert Item.objects.using("alpha").count() == 1


class CommittingTests(SchemataTransactionTestCase):
    schema = "alpha"

    def test_commits_what_it_writes(self):
        called = []

        schemata.on_commit(lambda: called.append("alpha"))
        Item.objects.create(name="committed", owner=User.objects.create(username="eve"))

        assert called == ["alpha"]
        assert committed("alpha") == 1

    def test_then_the_schemas_it_wrote_to_are_emptied(self):
        assert committed("alpha") == 0
        assert not User.objects.exists()
"""


def drop_test_database() -> None:
    config = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    options = config.get("OPTIONS", {})
    with psycopg.connect(
        host=config["HOST"] or options.get("host"),
        port=config["PORT"] or None,
        user=config["USER"],
        password=config["PASSWORD"],
        dbname=config["NAME"],
        autocommit=True,
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture
def project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.Pytester]:
    """A throwaway Django project that uses django-schemata and its pytest plugin."""
    # The project's pytest.ini names its settings; this suite's would win from the environment.
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    pytester.makefile(
        ".ini",
        pytest="[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n",
    )
    pytester.makepyfile(
        settings=SETTINGS,
        urls=URLS,
        conftest=CONFTEST,
        test_shop=TESTS,
        **{
            "shop/__init__": "",
            "shop/models": MODELS,
            "shop/migrations/__init__": "",
            "shop/migrations/0001_initial": MIGRATION,
        },
    )
    drop_test_database()
    yield pytester
    drop_test_database()


def migrated(project: pytest.Pytester) -> list[str]:
    return (project.path / "migrated.txt").read_text().split()


def test_the_plugin_isolates_schemas_in_a_users_project(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=22)
    assert sorted(set(migrated(project))) == ["alpha", "beta", "default"]


def test_the_test_cases_isolate_schemas_in_a_users_project(project: pytest.Pytester) -> None:
    project.makepyfile(test_cases=CASES)

    result = project.runpytest_subprocess("test_cases.py", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=6)


def test_reuse_db_keeps_the_migrated_schemas(project: pytest.Pytester) -> None:
    first = project.runpytest_subprocess("--reuse-db", "-p", "no:cacheprovider")
    first_migrated = migrated(project)
    second = project.runpytest_subprocess("--reuse-db", "-p", "no:cacheprovider")
    second_migrated = migrated(project)
    third = project.runpytest_subprocess("--create-db", "-p", "no:cacheprovider")

    for result in (first, second, third):
        result.assert_outcomes(passed=22)
    assert {"alpha", "beta"} <= set(first_migrated)
    assert not {"alpha", "beta"} & set(second_migrated)
    assert {"alpha", "beta"} <= set(migrated(project))


EXCLUDED = """
import pytest
from django.db import connections


def test_the_schema_fixture_takes_the_first_schema_not_excluded(schema):
    assert schema.name == "beta"


def test_every_schema_leaves_the_excluded_out(every_schema):
    assert every_schema.name == "beta"


@pytest.mark.django_db
def test_an_excluded_schema_is_not_created():
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT to_regnamespace('alpha') IS NULL")
        assert cursor.fetchone()[0]
"""


def test_the_schemas_the_ini_file_excludes_are_left_uncreated(project: pytest.Pytester) -> None:
    ini = project.path / "pytest.ini"
    ini.write_text(f"{ini.read_text()}\nschemata_exclude = alpha\n")
    project.makepyfile(test_excluded=EXCLUDED)

    result = project.runpytest_subprocess("test_excluded.py", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)
    assert sorted(set(migrated(project))) == ["beta", "default"]


GUARD_OFF = """
import pytest
from django.db import transaction

import schemata
from shop.models import Item


@pytest.mark.django_db(transaction=True)
def test_the_atomic_guard_the_settings_turn_off_stays_off():
    with transaction.atomic(), schemata.override("alpha"):
        assert Item.objects.count() == 0
"""


# None: the guard follows DEBUG, which pytest-django turns off.
@pytest.mark.parametrize("value", ["False", "None"])
def test_the_plugin_leaves_the_atomic_guard_as_the_settings_set_it(
    project: pytest.Pytester, value: str
) -> None:
    settings = project.path / "settings.py"
    settings.write_text(f"{settings.read_text()}\nSCHEMATA_ATOMIC_GUARD = {value}\n")
    project.makepyfile(test_guard=GUARD_OFF)

    result = project.runpytest_subprocess("test_guard.py", "-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


@pytest.fixture
def bare(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An empty directory to run pytest in, without this suite's Django settings."""
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    return pytester


def test_the_plugin_is_registered_through_its_entry_point(bare: pytest.Pytester) -> None:
    result = bare.runpytest_subprocess("--trace-config", "-p", "no:cacheprovider")

    assert any("schemata.pytest_plugin" in line for line in result.outlines)


@pytest.mark.parametrize("fixture", ["schema", "every_schema", "schema_client", "schemata_setup"])
def test_every_public_fixture_has_a_docstring(bare: pytest.Pytester, fixture: str) -> None:
    result = bare.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")

    lines = result.outlines
    heading = next(i for i, line in enumerate(lines) if line.startswith(f"{fixture} "))
    assert "pytest_plugin.py" in lines[heading]
    assert lines[heading + 1].startswith("    ") and lines[heading + 1].strip()
