"""Reuse, within one process, the migration states that schema after schema goes through.

Django recomputes, for every migration operation it applies, the project state before and
after it (cloning it, then rendering changed historical models): for a schema of tens of
migrations that is most of the Python time of ``migrate``, and it is the same for every
schema that starts from the same applied migrations and follows the same plan. While
``reusing_states()`` is active, the first such schema records those states; the next ones
only run each operation's database work between the recorded states.

It also puts each atomic migration and its record in one transaction (``apply_migration``):
Django records a migration that leaves deferred SQL only after that SQL has committed.

This is the one place where django-schemata depends on Django's migration internals. What it
replaces (``Migration.apply``, and ``MigrationExecutor.apply_migration`` in a transaction) and
what it relies on (the executor calls ``apply`` once per
migration of a forwards plan, in order, with the state the previous call returned; how a state
is cloned and its delayed rendering cleared) are pinned by digests of their code:
``check_django()`` raises ``ImproperlyConfigured`` naming the function a Django release changed.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

import django
from django.core.exceptions import ImproperlyConfigured
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.state import ProjectState
from django.db.transaction import atomic

Key = tuple[str, str]

#: Plans whose states are kept per process (each holds a state per operation).
KEPT_PLANS = 4

#: Digests of the code this module replaces or relies on, in the Django releases it supports.
KNOWN: dict[str, frozenset[str]] = {
    "django.db.migrations.migration.Migration.apply": frozenset({"9fcff9debec065ac"}),
    "django.db.migrations.executor.MigrationExecutor.migrate": frozenset({"4a11913382608dc3"}),
    "django.db.migrations.executor.MigrationExecutor.apply_migration": frozenset(
        {"f3c528ee88ab6a71", "3c328ebb19e4a898"}  # 5.2, 6.x
    ),
    "django.db.migrations.executor.MigrationExecutor._migrate_all_forwards": frozenset(
        {"44b706ec0a7910fc"}
    ),
    "django.db.migrations.state.ProjectState.clone": frozenset({"2ed48e5133d0939d"}),
    "django.db.migrations.state.ProjectState.clear_delayed_apps_cache": frozenset(
        {"3ec2819dba109057"}
    ),
}

_ORIGINAL_APPLY = Migration.apply
_ORIGINAL_MIGRATE = MigrationExecutor.migrate
_ORIGINAL_APPLY_MIGRATION = MigrationExecutor.apply_migration


def code_digest(func: Callable[..., Any]) -> str:
    """A digest of a function's code, blind to comments, docstrings and layout."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def _functions() -> dict[str, Callable[..., Any] | None]:
    return {
        "django.db.migrations.migration.Migration.apply": _ORIGINAL_APPLY,
        "django.db.migrations.executor.MigrationExecutor.migrate": _ORIGINAL_MIGRATE,
        "django.db.migrations.executor.MigrationExecutor.apply_migration": (
            _ORIGINAL_APPLY_MIGRATION
        ),
        "django.db.migrations.executor.MigrationExecutor._migrate_all_forwards": getattr(
            MigrationExecutor, "_migrate_all_forwards", None
        ),
        "django.db.migrations.state.ProjectState.clone": ProjectState.clone,
        "django.db.migrations.state.ProjectState.clear_delayed_apps_cache": (
            ProjectState.clear_delayed_apps_cache
        ),
    }


@cache
def check_django() -> None:
    """Refuse to start on a Django release whose migration internals differ from the known."""
    changed = [
        name
        for name, func in _functions().items()
        if func is None or code_digest(func) not in KNOWN[name]
    ]
    if changed:
        raise ImproperlyConfigured(
            f"Django {django.get_version()} changed {', '.join(changed)}, which "
            f"migrate_schemata reuses across schemas (schemata/statecache.py). This "
            f"django-schemata release does not support it: upgrade django-schemata."
        )


class _Tape:
    """The states of one plan: per migration, the state before each operation and after."""

    def __init__(self) -> None:
        self.states: dict[Key, list[ProjectState]] = {}
        self.complete = False


_tapes: OrderedDict[Any, _Tape] = OrderedDict()
#: The tape of the plan being applied in this context, and whether it is being recorded.
_active: ContextVar[tuple[_Tape, bool] | None] = ContextVar("schemata_tape", default=None)


def forget_states() -> None:
    """Drop the states kept so far: the next schema records its plan's states afresh."""
    _tapes.clear()


@contextmanager
def reusing_states() -> Iterator[None]:
    """Within the block, reuse the states of plans already applied in this process."""
    check_django()
    Migration.apply = _apply  # type: ignore[method-assign]
    MigrationExecutor.migrate = _migrate  # type: ignore[method-assign]
    MigrationExecutor.apply_migration = _apply_migration  # type: ignore[method-assign]
    try:
        yield
    finally:
        Migration.apply = _ORIGINAL_APPLY  # type: ignore[method-assign]
        MigrationExecutor.migrate = _ORIGINAL_MIGRATE  # type: ignore[method-assign]
        MigrationExecutor.apply_migration = _ORIGINAL_APPLY_MIGRATION  # type: ignore[method-assign]


def _apply_migration(
    self: MigrationExecutor,
    state: ProjectState,
    migration: Migration,
    fake: bool = False,
    fake_initial: bool = False,
) -> ProjectState:
    """Apply and record an atomic migration in one transaction.

    Django records a migration that leaves deferred SQL (a foreign key, an index) after the
    migration's transaction has committed: a process killed in between leaves the schema
    changed and the migration unrecorded, and the next run fails to apply it again.
    """
    if fake or not migration.atomic or not self.connection.features.can_rollback_ddl:
        return _ORIGINAL_APPLY_MIGRATION(self, state, migration, fake, fake_initial)
    with atomic(self.connection.alias):
        return _ORIGINAL_APPLY_MIGRATION(self, state, migration, fake, fake_initial)


def _plan_key(executor: MigrationExecutor, plan: Any, fake: bool, fake_initial: bool) -> Any:
    """What makes two runs go through the same states; None when states are not reused."""
    if not plan or fake or fake_initial or any(backwards for _, backwards in plan):
        return None  # fake_initial may skip operations: no fixed sequence of states
    if any(type(migration).apply is not _apply for migration, _ in plan):
        return None  # a migration class of its own making: leave it alone
    nodes = executor.loader.graph.nodes
    applied = frozenset(key for key in executor.loader.applied_migrations or () if key in nodes)
    return applied, tuple((m.app_label, m.name) for m, _ in plan)


def _migrate(
    self: MigrationExecutor,
    targets: Any,
    plan: Any = None,
    state: Any = None,
    fake: bool = False,
    fake_initial: bool = False,
) -> Any:
    key = _plan_key(self, plan, fake, fake_initial)
    tape = _tapes.get(key) if key is not None else None
    recording = key is not None and (tape is None or not tape.complete)
    if recording:
        tape = _tapes[key] = _Tape()
        while len(_tapes) > KEPT_PLANS:
            _tapes.popitem(last=False)
    elif tape is not None:
        _tapes.move_to_end(key)
    token = _active.set((tape, recording) if tape is not None else None)
    try:
        result = _ORIGINAL_MIGRATE(self, targets, plan, state, fake, fake_initial)
    finally:
        _active.reset(token)
    if recording and tape is not None:
        assert plan is not None
        last = plan[-1][0]
        final = tape.states[(last.app_label, last.name)][-1]
        _settle(final)  # `migrate` renders the final state afresh otherwise, every time
        tape.complete = True
    return result


def _settle(state: ProjectState) -> None:
    """Render a state whose rendering was delayed, once, so later users need not."""
    if state.is_delayed:
        state.clear_delayed_apps_cache()
        state.apps  # noqa: B018  (renders)
        state.is_delayed = False


def _apply(
    self: Migration, project_state: ProjectState, schema_editor: Any, collect_sql: bool = False
) -> ProjectState:
    active = _active.get()
    if active is None or collect_sql:
        return _ORIGINAL_APPLY(self, project_state, schema_editor, collect_sql)
    tape, recording = active
    key = (self.app_label, self.name)
    if recording:
        # Django's own loop, keeping the state before each operation and the one after all.
        states: list[ProjectState] = []
        for operation in self.operations:
            old_state = project_state.clone()
            operation.state_forwards(self.app_label, project_state)
            rendered = old_state.__dict__.get("apps")
            _forwards(self, operation, schema_editor, old_state, project_state)
            if rendered is not None and old_state.__dict__.get("apps") is not rendered:
                old_state.is_delayed = False  # rendered afresh (by RunPython): keep it so
            states.append(old_state)
        states.append(project_state.clone())
        tape.states[key] = states
        return project_state
    states = tape.states[key]
    for index, operation in enumerate(self.operations):
        _forwards(self, operation, schema_editor, states[index], states[index + 1])
    return states[-1]


def _forwards(
    migration: Migration,
    operation: Any,
    schema_editor: Any,
    from_state: ProjectState,
    to_state: ProjectState,
) -> None:
    """Run one operation's database work as ``Migration.apply`` does."""
    atomic_operation = operation.atomic or (migration.atomic and operation.atomic is not False)
    if not schema_editor.atomic_migration and atomic_operation:
        with atomic(schema_editor.connection.alias):
            operation.database_forwards(migration.app_label, schema_editor, from_state, to_state)
    else:
        operation.database_forwards(migration.app_label, schema_editor, from_state, to_state)
