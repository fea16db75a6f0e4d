"""Files per schema: real files in a temporary MEDIA_ROOT, served through the test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import Http404
from django.test import Client, RequestFactory, override_settings

import schemata
from schemata.storage import (
    SchemaStorageMixin,
    check_storage,
    copy_into_schema,
    serve,
)

BACKEND = "schemata.storage.SchemaFileSystemStorage"
ALPHA = "alpha.example.com"
BETA = "beta.example.com"


def storages(backend: str, **options: Any) -> dict[str, Any]:
    return {**settings.STORAGES, "default": {"BACKEND": backend, "OPTIONS": options}}


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    """A MEDIA_ROOT of its own, served at /media/, with the schema-aware default storage."""
    # Changing STORAGES makes Django drop its cached storages (and default_storage's object).
    with override_settings(
        STORAGES=storages(BACKEND),
        MEDIA_ROOT=str(tmp_path),
        MEDIA_URL="/media/",
        ROOT_URLCONF="tests.storage_urls",
    ):
        yield tmp_path


def save(schema: str, name: str, data: bytes) -> str:
    with schemata.override(schema):
        return default_storage.save(name, ContentFile(data))


def read(schema: str, name: str) -> bytes:
    with schemata.override(schema), default_storage.open(name) as file:
        content: bytes = file.read()
    return content


def fetch(host: str, path: str) -> tuple[int, bytes]:
    response = Client().get(path, HTTP_HOST=host)
    try:
        body = response.getvalue() if response.streaming else response.content
    finally:
        response.close()
    return response.status_code, body


# The leaks of one shared folder: read, overwritten, deleted and served across tenants.


def test_a_file_saved_on_alpha_is_not_found_on_beta(media: Path) -> None:
    save("alpha", "report.txt", b"alpha's report")

    with schemata.override("beta"):
        assert not default_storage.exists("report.txt")
        with pytest.raises(FileNotFoundError):
            default_storage.open("report.txt")


def test_each_schema_keeps_its_own_file_under_the_same_name(media: Path) -> None:
    first = save("alpha", "logo.png", b"alpha")

    second = save("beta", "logo.png", b"beta")

    assert first == second == "logo.png"
    assert read("alpha", "logo.png") == b"alpha"
    assert read("beta", "logo.png") == b"beta"


def test_saving_over_a_name_on_beta_leaves_alphas_file_alone(media: Path) -> None:
    with override_settings(STORAGES=storages(BACKEND, allow_overwrite=True)):
        save("alpha", "logo.png", b"alpha")

        save("beta", "logo.png", b"beta")

        assert read("alpha", "logo.png") == b"alpha"


def test_beta_cannot_delete_alphas_file(media: Path) -> None:
    save("alpha", "report.txt", b"alpha's report")

    with schemata.override("beta"):
        default_storage.delete("report.txt")

    assert read("alpha", "report.txt") == b"alpha's report"


def test_beta_lists_its_own_files_only(media: Path) -> None:
    save("alpha", "docs/a.txt", b"a")
    save("beta", "docs/b.txt", b"b")

    with schemata.override("beta"):
        listing = default_storage.listdir("docs")

    assert listing == ([], ["b.txt"])


@pytest.mark.parametrize(
    "method", ["size", "get_accessed_time", "get_created_time", "get_modified_time"]
)
def test_beta_cannot_read_the_metadata_of_alphas_file(media: Path, method: str) -> None:
    save("alpha", "report.txt", b"alpha's report")

    with schemata.override("beta"), pytest.raises(FileNotFoundError):
        getattr(default_storage, method)("report.txt")


def test_alphas_file_is_served_on_alphas_host(media: Path) -> None:
    name = save("alpha", "report.txt", b"alpha's report")

    assert fetch(ALPHA, f"/media/{name}") == (200, b"alpha's report")


def test_alphas_file_is_a_404_on_betas_host(media: Path) -> None:
    name = save("alpha", "report.txt", b"alpha's report")

    status, _ = fetch(BETA, f"/media/{name}")

    assert status == 404


def test_each_host_is_served_its_own_file_of_the_same_name(media: Path) -> None:
    save("alpha", "logo.png", b"alpha")
    save("beta", "logo.png", b"beta")

    assert fetch(ALPHA, "/media/logo.png") == (200, b"alpha")
    assert fetch(BETA, "/media/logo.png") == (200, b"beta")


# Where files are, and what the database and the URL hold.


def test_files_are_kept_under_the_schemas_folder(media: Path) -> None:
    name = save("alpha", "docs/report.txt", b"alpha's report")

    assert name == "docs/report.txt"
    assert (media / "alpha" / "docs" / "report.txt").read_bytes() == b"alpha's report"
    with schemata.override("alpha"):
        assert default_storage.path(name) == str(media / "alpha" / "docs" / "report.txt")


def test_the_url_is_media_url_and_the_name_as_the_tenant_sees_it(media: Path) -> None:
    name = save("alpha", "my report.txt", b"alpha's report")

    with schemata.override("alpha"):
        url = default_storage.url(name)

    assert url == "/media/my%20report.txt"
    assert fetch(ALPHA, url) == (200, b"alpha's report")


def test_an_available_name_is_looked_up_in_the_active_schema(media: Path) -> None:
    save("alpha", "report.txt", b"alpha's report")

    with schemata.override("alpha"):
        on_alpha = default_storage.get_available_name("report.txt")
    with schemata.override("beta"):
        on_beta = default_storage.get_available_name("report.txt")

    assert on_alpha.startswith("report_")
    assert on_beta == "report.txt"


def test_max_length_bounds_the_name_without_the_schema(media: Path) -> None:
    with schemata.override("alpha"):
        name = default_storage.save("ten-chars.", ContentFile(b"x"), max_length=10)

    assert name == "ten-chars."


# Names that try to leave the schema's folder.

ESCAPES = ["../beta/report.txt", "/etc/hostname", "..\\beta\\report.txt", "docs/../../beta/x"]


@pytest.mark.parametrize("name", ESCAPES)
@pytest.mark.parametrize(
    "method",
    ["open", "exists", "delete", "path", "size", "listdir", "url", "get_available_name"],
)
def test_a_name_that_leaves_the_schemas_folder_is_refused(
    media: Path, name: str, method: str
) -> None:
    save("beta", "report.txt", b"beta's report")

    with schemata.override("alpha"), pytest.raises(SuspiciousFileOperation):
        getattr(default_storage, method)(name)


@pytest.mark.parametrize("name", ESCAPES)
def test_a_file_cannot_be_saved_outside_the_schemas_folder(media: Path, name: str) -> None:
    save("beta", "report.txt", b"beta's report")

    with schemata.override("alpha"), pytest.raises(SuspiciousFileOperation):
        default_storage.save(name, ContentFile(b"alpha's"))

    assert read("beta", "report.txt") == b"beta's report"


@pytest.mark.parametrize("path", ["/media/../beta/report.txt", "/media/%2e%2e/beta/report.txt"])
def test_a_url_cannot_reach_another_schemas_folder(media: Path, path: str) -> None:
    save("beta", "report.txt", b"beta's report")

    status, body = fetch(ALPHA, path)

    assert status == 400
    assert b"beta's report" not in body


# No active schema.


@pytest.mark.parametrize("method", ["open", "exists", "path", "url"])
def test_the_storage_refuses_to_work_without_an_active_schema(media: Path, method: str) -> None:
    with pytest.raises(schemata.NoActiveSchema, match="No schema is active"):
        getattr(default_storage, method)("report.txt")


def test_nothing_is_saved_without_an_active_schema(media: Path) -> None:
    with pytest.raises(schemata.NoActiveSchema):
        default_storage.save("report.txt", ContentFile(b"lost"))

    assert list(media.iterdir()) == []


def test_the_serve_view_is_a_404_without_an_active_schema(media: Path) -> None:
    save("alpha", "report.txt", b"alpha's report")

    with pytest.raises(Http404):
        serve(RequestFactory().get("/media/alpha/report.txt"), "alpha/report.txt")


# The mixin on other storage classes.


class ArchiveStorage(FileSystemStorage):
    """A storage of a project's own, with its own location and URL."""


class SchemaArchiveStorage(SchemaStorageMixin, ArchiveStorage):
    pass


class Renaming(SchemaStorageMixin, FileSystemStorage):
    """A broken backend that saves under another name than it was given."""

    def _save(self, name: str, content: Any) -> str:
        super()._save(name, content)  # type: ignore[misc]  # django-stubs omit Storage._save
        return "elsewhere.txt"


def test_the_mixin_keeps_another_storages_files_per_schema(tmp_path: Path) -> None:
    storage = SchemaArchiveStorage(location=tmp_path / "archive", base_url="/archive/")

    for schema in ("alpha", "beta"):
        with schemata.override(schema):
            assert storage.save("2024.csv", ContentFile(schema.encode())) == "2024.csv"

    assert (tmp_path / "archive" / "alpha" / "2024.csv").read_bytes() == b"alpha"
    assert (tmp_path / "archive" / "beta" / "2024.csv").read_bytes() == b"beta"


def test_the_mixins_urls_address_the_schemas_file(tmp_path: Path) -> None:
    storage = SchemaArchiveStorage(location=tmp_path, base_url="/archive/")

    with schemata.override("beta"):
        url = storage.url("2024.csv")

    assert url == "/archive/beta/2024.csv"


def test_a_name_the_backend_moves_out_of_the_schemas_folder_is_refused(tmp_path: Path) -> None:
    storage = Renaming(location=tmp_path)

    with schemata.override("alpha"), pytest.raises(SuspiciousFileOperation, match="elsewhere"):
        storage.save("report.txt", ContentFile(b"x"))


# Files saved before the switch, at the root of MEDIA_ROOT.


def test_files_from_before_the_switch_can_be_copied_into_a_schema(media: Path) -> None:
    (media / "docs").mkdir()
    (media / "docs" / "old.txt").write_bytes(b"from before")

    with schemata.override("alpha"):
        copied = copy_into_schema(["docs/old.txt"])

    assert copied == ["docs/old.txt"]
    assert read("alpha", "docs/old.txt") == b"from before"
    assert fetch(ALPHA, "/media/docs/old.txt") == (200, b"from before")


def test_copying_skips_empty_names_missing_files_and_files_copied_already(media: Path) -> None:
    (media / "old.txt").write_bytes(b"from before")
    save("alpha", "mine.txt", b"alpha's own")
    (media / "mine.txt").write_bytes(b"from before")

    with schemata.override("alpha"):
        copied = copy_into_schema(["", "gone.txt", "mine.txt", "old.txt", "old.txt"])

    assert copied == ["old.txt"]
    assert read("alpha", "mine.txt") == b"alpha's own"


def test_copying_refuses_names_outside_the_root(media: Path) -> None:
    with schemata.override("alpha"), pytest.raises(SuspiciousFileOperation):
        copy_into_schema(["../secret.txt"])


# The system check.


@pytest.mark.parametrize(
    "backend",
    [BACKEND, f"{__name__}.SchemaArchiveStorage", "no.such.Storage"],
)
def test_the_check_accepts_schema_aware_and_unimportable_storages(backend: str) -> None:
    with override_settings(STORAGES=storages(backend)):
        assert check_storage() == []


def test_the_check_warns_about_a_storage_shared_by_every_schema() -> None:
    backend = "django.core.files.storage.FileSystemStorage"

    with override_settings(STORAGES=storages(backend)):
        messages = check_storage()

    assert [message.id for message in messages] == ["schemata.W003"]
    assert backend in messages[0].msg
