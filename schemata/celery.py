"""Celery tasks run in the schema that was active when they were sent.

Call ``schemata.celery.install(app)`` once, in the module that creates the Celery app. Then:

- ``before_task_publish`` writes the active schema's name into the message header
  ``schemata_schema``, unless the sender gave that header itself. Every message passes there:
  ``delay``, ``apply_async``, ``send_task``, canvases, retries and beat alike.
- ``task_prerun`` activates the schema the header names (none without one) and
  ``task_postrun`` restores the previous one. Celery sends both from one call of its tracer,
  postrun from a ``finally``: the token is reset in the thread and context that created it, in
  every pool, after failures and retries too.

Signals rather than a ``Task`` base class: they reach every task, whatever its base class, with
one call; and their window is wider than the task body. After the body returns, Celery still
sends the next task of a chain, the callbacks, the errbacks and a chord's body while the task's
schema is active, so each of them carries it on. A base class's ``__call__`` ends before that
and would send them with no schema.

Celery logs and swallows any exception a signal receiver raises, so ``task_prerun`` cannot stop
a task: a header naming a schema the worker does not know would run the task with none. The app
loader's ``on_task_init`` hook runs right after ``task_prerun``, before the body, and Celery
lets its exceptions fail the task; ``install`` wraps it to raise ``UnknownSchema`` there.
"""

from __future__ import annotations

from contextvars import Token
from typing import TYPE_CHECKING, Any, cast

from celery import Celery, Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from schemata.databases import Schema
from schemata.state import activate, deactivate, get_current_schema, get_schema, reset

if TYPE_CHECKING:
    from schemata.connections import SchemataConnectionHandler

#: The message header that names the schema a task runs in.
HEADER = "schemata_schema"

# Set on the task's request (one per execution) between task_prerun and task_postrun.
_TOKEN = "_schemata_token"


def install(app: Celery) -> None:
    """Make every task of ``app`` run in the schema active when it was sent (idempotent)."""
    before_task_publish.connect(write_header, weak=False, dispatch_uid="schemata.header")
    task_prerun.connect(enter_schema, weak=False, dispatch_uid="schemata.enter")
    task_postrun.connect(leave_schema, weak=False, dispatch_uid="schemata.leave")
    loader = app.loader
    if not getattr(loader.on_task_init, "schemata_guard", False):
        on_task_init = loader.on_task_init

        def guarded(task_id: str, task: Task) -> None:
            refuse_unknown_schema(task)
            on_task_init(task_id, task)

        guarded.schemata_guard = True  # type: ignore[attr-defined]
        loader.on_task_init = guarded


def write_header(headers: dict[str, Any], **kwargs: Any) -> None:
    """``before_task_publish`` receiver: name the active schema in the message's headers."""
    schema = get_current_schema()
    if schema is not None:
        headers.setdefault(HEADER, schema.name)


def _schema_for(task: Task) -> Schema | None:
    request = task.request
    # Celery keeps a message's own headers in request.headers, in a worker as in apply().
    headers = request.headers or {}
    if HEADER not in headers:
        # task.apply() runs in the sender's own context: its schema is already the right one.
        return get_current_schema() if request.is_eager else None
    name = headers[HEADER]
    return None if name is None else get_schema(name)


def enter_schema(sender: Task, **kwargs: Any) -> None:
    """``task_prerun`` receiver: activate the schema the task was sent with."""
    try:
        schema = _schema_for(sender)
    except LookupError:
        schema = None  # the loader guard fails the task before its body runs
    token = deactivate() if schema is None else activate(schema)
    setattr(sender.request, _TOKEN, token)


def refuse_unknown_schema(task: Task) -> None:
    """Raise ``UnknownSchema`` if the task's header names a schema no domain uses."""
    _schema_for(task)


def leave_schema(sender: Task, **kwargs: Any) -> None:
    """``task_postrun`` receiver: restore the schema, release the task's schema connections."""
    token: Token[Schema | None] = vars(sender.request).pop(_TOKEN)
    reset(token)
    if not sender.request.is_eager:
        close_schema_connections()


def close_schema_connections() -> None:
    """Close this thread's schema connections as Django does after a request, and forget them."""
    from django.db import connections as handler

    # SchemataConfig.ready() gave django.db.connections this class.
    connections = cast("SchemataConnectionHandler", handler)
    for conn in list(connections._schema_aliases().values()):
        conn.close_if_unusable_or_obsolete()
    connections.release_idle()
