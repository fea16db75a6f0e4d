"""Jobs for the runner's tests, importable by the worker processes."""

from __future__ import annotations

import os
from typing import Any

from schemata.runner import Outcome


def echo(schema: str, options: dict[str, Any]) -> Outcome:
    return Outcome(schema, "done", (f"pid {os.getpid()}",))


def die(schema: str, options: dict[str, Any]) -> Outcome:
    os._exit(3)  # a worker killed in the middle of a schema
