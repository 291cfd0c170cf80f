"""Structured logs: every record of every service says which workspace, execution, step, trace
and span it is about, as one JSON object per line (or a readable line on a terminal).

What a record is about comes from a context variable that the code handling one thing binds
(``bound(…)`` / ``bound_to(event)``: a worker for a step attempt, a consumer for a message), or
from the record's ``extra``; the trace and span ids from the current OpenTelemetry span. Logs and
traces then join up by id, and ``grep execution_id`` finds one execution across all services.

``BATON_LOG_FORMAT=json|text`` chooses; the default is text on a terminal, JSON otherwise (the
files ``baton up`` writes, containers).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

if TYPE_CHECKING:
    from baton_common.events import Event

FIELDS = ("workspace_id", "execution_id", "step_id")
_about: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("baton_log_about")
# The service a record comes from, when one process serves several (``together``).
_service: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "baton_log_service", default=None
)


def serving_as(service: str) -> None:
    """Records logged in this context (a service's task and what it starts) name ``service``
    instead of the process's."""
    _service.set(service)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Records logged inside the block (this task and what it starts) carry these fields."""
    current = _about.get({})
    token = _about.set({**current, **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _about.reset(token)


def bound_to(event: Event) -> contextlib.AbstractContextManager[None]:
    """What a record logged while handling ``event`` is about."""
    return bound(
        workspace_id=event.workspace_id,
        execution_id=event.correlation_id or getattr(event, "execution_id", None),
        step_id=getattr(event, "step_id", None),
    )


class ContextFilter(logging.Filter):
    """Stamps each record with the service, what it is about, and the current trace and span."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        about = _about.get({})
        record.service = _service.get() or self.service
        for name in FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, about.get(name))
        span = trace.get_current_span().get_span_context()
        record.trace_id = f"{span.trace_id:032x}" if span.is_valid else None
        record.span_id = f"{span.span_id:016x}" if span.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the same keys every time (null when unknown)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": getattr(record, "service", None),
            "logger": record.name,
            "message": record.getMessage(),
            **{k: getattr(record, k, None) for k in (*FIELDS, "trace_id", "span_id")},
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line for people: time, service, level, what it is about, trace, message."""

    def format(self, record: logging.LogRecord) -> str:
        about = " ".join(
            f"{k.removesuffix('_id')}={v}" for k in FIELDS if (v := getattr(record, k, None))
        )
        trace_id = getattr(record, "trace_id", None)
        parts = [
            self.formatTime(record, "%H:%M:%S"),
            str(getattr(record, "service", "")),
            record.levelname,
            f"[{about}]" if about else "",
            f"trace={trace_id}" if trace_id else "",
            f"{record.name}: {record.getMessage()}",
        ]
        line = " ".join(p for p in parts if p)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(service: str, level: str = "INFO", fmt: str | None = None) -> None:
    """The process's one log handler (stderr), structured as chosen."""
    fmt = fmt or os.environ.get("BATON_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter(service))
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("nats").setLevel(logging.WARNING)
