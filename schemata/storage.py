"""File storage per schema: each schema's files under ``<schema>/``, served on its hosts only."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from os import PathLike
from typing import IO, Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Warning
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, Storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views import static

from schemata.exceptions import NoActiveSchema
from schemata.state import get_current_schema

# Storages (by id) inside one of their own methods: the name they pass to their own methods
# (FileSystemStorage._save calls self.path, Storage.save calls self.exists) is mapped already.
_mapping: ContextVar[frozenset[int]] = ContextVar("schemata_storage_mapping", default=frozenset())


def _schema_prefix() -> str:
    schema = get_current_schema()
    if schema is None:
        raise NoActiveSchema(
            "No schema is active: files are kept per schema, so a schema-aware storage "
            "needs one. Use schemata.override('<schema>') outside requests."
        )
    return f"{schema.name}/"


def _clean(name: str) -> str:
    # Checked before the prefix is added: "../beta/x" would stay inside the storage's root,
    # so the storage's own checks (safe_join, validate_file_name) would let it through.
    path = pathlib.PurePosixPath(str(name).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise SuspiciousFileOperation(f"The name {name!r} leaves the schema's folder.")
    return str(name)


class SchemaStorageMixin(Storage):
    """Keep every file in the active schema's folder: ``name`` is stored as ``<schema>/name``."""

    #: Whether ``url()`` addresses ``<schema>/name`` (S3 keys, signed URLs) or ``name``, for a
    #: server that adds the schema of the request's host (``serve``, nginx).
    schema_in_url = True

    @contextmanager
    def _in_schema(self) -> Iterator[str]:
        mapping = _mapping.get()
        if id(self) in mapping:
            yield ""
            return
        prefix = _schema_prefix()
        token = _mapping.set(mapping | {id(self)})
        try:
            yield prefix
        finally:
            _mapping.reset(token)

    @staticmethod
    def _join(prefix: str, name: str) -> str:
        return prefix + _clean(name) if prefix else name

    def open(self, name: str, mode: str = "rb") -> File[Any]:
        with self._in_schema() as prefix:
            return super().open(self._join(prefix, name), mode)

    def save(self, name: str | None, content: IO[Any], max_length: int | None = None) -> str:
        name = content.name if name is None else name
        with self._in_schema() as prefix:
            # max_length bounds the name the caller stores (a FileField's column): no prefix.
            limit = None if max_length is None else max_length + len(prefix)
            saved = super().save(self._join(prefix, name), content, limit)
        return self._strip(prefix, saved)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        with self._in_schema() as prefix:
            limit = None if max_length is None else max_length + len(prefix)
            available = super().get_available_name(self._join(prefix, name), limit)
        return self._strip(prefix, available)

    @staticmethod
    def _strip(prefix: str, name: str) -> str:
        if not name.startswith(prefix):
            raise SuspiciousFileOperation(f"The storage returned {name!r}, outside {prefix!r}.")
        return name[len(prefix) :]

    def path(self, name: str) -> str:
        with self._in_schema() as prefix:
            return super().path(self._join(prefix, name))

    def delete(self, name: str) -> None:
        with self._in_schema() as prefix:
            super().delete(self._join(prefix, name))

    def exists(self, name: str) -> bool:
        with self._in_schema() as prefix:
            return super().exists(self._join(prefix, name))

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        with self._in_schema() as prefix:
            return super().listdir(self._join(prefix, path))

    def size(self, name: str) -> int:
        with self._in_schema() as prefix:
            return super().size(self._join(prefix, name))

    def url(self, name: str | None) -> str:
        with self._in_schema() as prefix:
            full = self._join(prefix, name or "")
            return super().url(full if self.schema_in_url else name)

    def get_accessed_time(self, name: str) -> datetime:
        with self._in_schema() as prefix:
            return super().get_accessed_time(self._join(prefix, name))

    def get_created_time(self, name: str) -> datetime:
        with self._in_schema() as prefix:
            return super().get_created_time(self._join(prefix, name))

    def get_modified_time(self, name: str) -> datetime:
        with self._in_schema() as prefix:
            return super().get_modified_time(self._join(prefix, name))


class SchemaFileSystemStorage(SchemaStorageMixin, FileSystemStorage):
    """``FileSystemStorage`` in ``<MEDIA_ROOT>/<schema>/``; URLs are ``MEDIA_URL`` + the name."""

    # The URL names the file as its tenant sees it; serve() (or nginx) adds the host's schema,
    # so another tenant's host cannot reach it by URL.
    schema_in_url = False


def serve(
    request: HttpRequest,
    path: str,
    document_root: str | PathLike[str] | None = None,
    show_indexes: bool = False,
) -> HttpResponse | FileResponse:
    """``django.views.static.serve`` rooted at ``<document_root or MEDIA_ROOT>/<schema>``."""
    schema = get_current_schema()
    if schema is None:
        raise Http404("Files are served on a tenant's host only.")
    root = pathlib.Path(document_root or settings.MEDIA_ROOT) / schema.name
    return static.serve(request, path, document_root=str(root), show_indexes=show_indexes)


def copy_into_schema(names: Iterable[str], root: str | PathLike[str] | None = None) -> list[str]:
    """Copy files saved before the switch from ``root`` into the active schema's folder."""
    prefix = _schema_prefix()
    base = pathlib.Path(root or settings.MEDIA_ROOT)
    copied = []
    for name in filter(None, names):  # an empty FileField holds ""
        source, target = base / _clean(name), base / prefix / name
        # Re-runnable: files copied already, and names whose file is gone, are skipped.
        if target.exists() or not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(name)
    return copied


def check_storage(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when ``STORAGES["default"]`` keeps every schema's files in one place."""
    backend = settings.STORAGES.get("default", {}).get("BACKEND", "")
    try:
        storage_class = import_string(backend)
    except ImportError:
        return []  # Django names the backend it cannot import when the storage is first used.
    if isinstance(storage_class, type) and issubclass(storage_class, SchemaStorageMixin):
        return []
    return [
        Warning(
            f"STORAGES['default'] uses {backend!r}, which keeps the files of every schema "
            f"together: a tenant could read, overwrite or delete another tenant's files.",
            hint="Use 'schemata.storage.SchemaFileSystemStorage', or add "
            "schemata.storage.SchemaStorageMixin first to your storage class's bases.",
            id="schemata.W003",
        )
    ]
