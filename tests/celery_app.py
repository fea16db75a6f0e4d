"""The Celery app of the tests: imported by the tests, and by the worker they start."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

from celery import Celery, Task
from celery.signals import task_received
from django.db import connections

import schemata
import schemata.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("tests")
app.conf.update(
    # The worker gets these from its environment; the tests set them before sending.
    broker_url=os.environ.get("SCHEMATA_TEST_BROKER", "memory://"),
    result_backend=os.environ.get("SCHEMATA_TEST_BROKER"),
    task_default_queue=os.environ.get("SCHEMATA_TEST_QUEUE", "celery"),
    broker_connection_retry_on_startup=False,
    worker_hijack_root_logger=False,
)
schemata.celery.install(app)


def task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``app.task(**options)``: Celery has no type information, so its tasks are ``Any``."""
    return cast("Callable[[Callable[..., Any]], Any]", app.task(**options))


def active() -> str | None:
    schema = schemata.get_current_schema()
    return schema.name if schema else None


#: The schema active in the worker's thread when it received each task, by task id.
on_receipt: dict[str, str | None] = {}


def remember_schema_on_receipt(request: Any, **kwargs: Any) -> None:
    on_receipt[request.id] = active()


task_received.connect(remember_schema_on_receipt)


@task(bind=True)
def where_received(self: Task) -> dict[str, Any]:
    """The schema active when the worker received this task, and while it runs."""
    return {"received": on_receipt.pop(self.request.id), "running": active(), "pid": os.getpid()}


@task()
def where(*results: Any) -> dict[str, Any]:
    """The active schema, the results of the tasks before it and the worker's process id."""
    return {"schema": active(), "results": list(results), "pid": os.getpid()}


@task()
def write(title: str) -> str | None:
    """Save a note wherever the router sends it; return the active schema."""
    from tests.testapp.models import Note

    Note.objects.create(title=title)
    return active()


@task()
def fail() -> None:
    raise ValueError(f"failed in {active()}")


@task(bind=True, max_retries=1)
def retry_once(self: Task) -> dict[str, Any]:
    if not self.request.retries:
        raise self.retry(countdown=0)
    return {"schema": active(), "retries": self.request.retries}


@task()
def backend_pid() -> int:
    """The process id of the PostgreSQL backend serving the active schema's connection."""
    with schemata.get_connection().cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid: int = cursor.fetchone()[0]
    return pid


@task()
def schema_connections() -> list[str]:
    """Query the active schema; list the schema aliases this thread has connection objects for."""
    from tests.testapp.models import Note

    Note.objects.exists()
    return [conn.alias for conn in connections.all() if conn.alias != "default"]
