from __future__ import annotations

import logging
import logging.config
import logging.handlers
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

import schemata
from schemata.logging import SchemaFilter
from schemata.middleware import SchemataMiddleware

LOGGERS = ("django.request", "shop", "shop.queue")


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """Give the loggers the tests configure their state back, and close the tests' handlers."""
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.filters[:], logger.level, logger.propagate)
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def log_file(tmp_path: Path, restore_loggers: None) -> Path:
    """Configure logging with dictConfig, as a settings module's LOGGING would; return its file."""
    path = tmp_path / "app.log"
    configure(path)
    return path


def configure(path: Path, **filter_options: Any) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"schema": {"()": "schemata.logging.SchemaFilter", **filter_options}},
            "formatters": {"plain": {"format": "[%(schema)s] %(levelname)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(path),
                    "filters": ["schema"],
                    "formatter": "plain",
                }
            },
            "loggers": {
                name: {"handlers": ["file"], "level": "INFO", "propagate": False}
                for name in ("django.request", "shop")
            },
        }
    )


def test_records_name_the_active_schema(log_file: Path) -> None:
    with schemata.override("alpha"):
        logging.getLogger("shop").info("order placed")

    assert log_file.read_text() == "[alpha] INFO order placed\n"


def test_records_with_no_schema_active_get_the_placeholder(log_file: Path) -> None:
    logging.getLogger("shop").warning("nightly run")

    assert log_file.read_text() == "[-] WARNING nightly run\n"


def test_the_placeholder_is_configurable(tmp_path: Path, restore_loggers: None) -> None:
    path = tmp_path / "app.log"
    configure(path, placeholder="public")

    logging.getLogger("shop").info("nightly run")

    assert path.read_text() == "[public] INFO nightly run\n"


def test_records_a_view_logs_name_its_hosts_schema(log_file: Path) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        logging.getLogger("shop").info("listing notes")
        return HttpResponse()

    SchemataMiddleware(view)(RequestFactory().get("/", HTTP_HOST="alpha.example.com"))

    assert log_file.read_text() == "[alpha] INFO listing notes\n"


def test_djangos_log_of_a_404_names_the_hosts_schema_name_its_hosts_schema(log_file: Path) -> None:
    response = Client().get("/missing/", HTTP_HOST="beta.example.com")

    assert response.status_code == 404
    assert log_file.read_text() == "[beta] WARNING Not Found: /missing/\n"


def test_a_record_keeps_its_schema_across_a_queue_handler(
    tmp_path: Path, restore_loggers: None
) -> None:
    # The listener's thread has no schema: the record must carry the one it was logged in.
    path = tmp_path / "queued.log"
    target = logging.FileHandler(path)
    target.setFormatter(logging.Formatter("[%(schema)s] %(message)s"))
    target.addFilter(SchemaFilter())
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, target)
    logger = logging.getLogger("shop.queue")
    logger.addFilter(SchemaFilter())
    logger.addHandler(logging.handlers.QueueHandler(records))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    listener.start()
    try:
        with schemata.override("alpha"):
            logger.info("queued")
    finally:
        listener.stop()
        target.close()

    assert path.read_text() == "[alpha] queued\n"
