"""The server's log lines: text or one JSON object per line (``LOREG_LOG_FORMAT``), each carrying the
id of the request it was written for (``X-Request-ID``, see :mod:`registry.api.request_id`)."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
ACCESS_LOGGER = "uvicorn.access"
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")


@dataclass(frozen=True, slots=True)
class RequestContext:
    id: str
    started: float  # time.perf_counter() when the request arrived


current_request: ContextVar[RequestContext | None] = ContextVar("lorareg_request", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) to every record, and to uvicorn's access lines their
    ``method``, ``path``, ``status`` and ``duration_ms`` (until the response started)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        record.request_id = request.id if request else None
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
            _client, record.method, record.path, _http, record.status = record.args
            if request is not None:
                record.duration_ms = round((time.perf_counter() - request.started) * 1000, 3)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id (and access fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_config(log_format: LogFormat) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for uvicorn's loggers and ``lorareg``, in ``log_format``."""
    formatter = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "lorareg",
        "filters": ["request_id"],
    }
    logger = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"lorareg": formatter},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": logger, "uvicorn.access": logger, "lorareg": logger},
    }
