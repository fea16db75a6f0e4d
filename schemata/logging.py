"""A logging filter that names the active schema in every record."""

from __future__ import annotations

import logging

from schemata.databases import Schema
from schemata.state import get_current_schema


class SchemaFilter(logging.Filter):
    """Give each record ``schema``: the active schema's name, or ``placeholder`` when none is."""

    def __init__(self, placeholder: str = "-") -> None:
        super().__init__()
        self.placeholder = placeholder

    def filter(self, record: logging.LogRecord) -> bool:
        # A record that already has one keeps it: a filter on the logger set it before a
        # QueueHandler passed the record to a thread where no schema is active.
        if not hasattr(record, "schema"):
            record.schema = self._name(record)
        return True

    def _name(self, record: logging.LogRecord) -> str:
        schema = get_current_schema()
        if schema is None:
            # Django logs a 4xx or 5xx response ("Not Found: /x") after the middleware has
            # restored the previous schema, with the request in the record.
            schema = getattr(getattr(record, "request", None), "schema", None)
        return schema.name if isinstance(schema, Schema) else self.placeholder
