"""Session engines whose sessions are valid only on the schema they were created on.

With ``sessions`` shared, one table holds every tenant's sessions and a session key is valid
for every host that receives it (a cookie set for a parent domain, or copied by hand). These
engines store the active schema in the session and treat a session from another schema as
absent: the request starts a new, empty session under a new key, and the other tenant's session
is left untouched. Use ``SESSION_ENGINE = "schemata.sessions.db"`` (or ``cached_db``, ``cache``,
``file``, ``signed_cookies``).
"""

from __future__ import annotations

from typing import Any

from schemata.state import get_current_schema

#: The session key that records the schema a session belongs to.
SCHEMA_SESSION_KEY = "_schemata_schema"


def _schema_name() -> str:
    schema = get_current_schema()
    # "" is no schema name, so a session made with no schema active is valid only there.
    return schema.name if schema is not None else ""


class SchemaSessionMixin:
    """Bind a ``SessionBase`` subclass's sessions to the schema active when they are saved."""

    _session_key: str | None

    def _check(self, data: dict[str, Any]) -> dict[str, Any]:
        if data and data.get(SCHEMA_SESSION_KEY) != _schema_name():
            # Another tenant's session: start afresh under a new key, as for an unknown key.
            self._session_key = None
            return {}
        return data

    def load(self) -> dict[str, Any]:
        return self._check(super().load())  # type: ignore[misc]

    async def aload(self) -> dict[str, Any]:
        return self._check(await super().aload())  # type: ignore[misc]

    def save(self, must_create: bool = False) -> None:
        session = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        session[SCHEMA_SESSION_KEY] = _schema_name()
        super().save(must_create)  # type: ignore[misc]

    async def asave(self, must_create: bool = False) -> None:
        session = await self._aget_session(no_load=must_create)  # type: ignore[attr-defined]
        session[SCHEMA_SESSION_KEY] = _schema_name()
        await super().asave(must_create)  # type: ignore[misc]
