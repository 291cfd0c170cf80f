"""Structured logs: every record carries the service, what it is about and the trace ids."""

from __future__ import annotations

import io
import json
import logging
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common import logs
from opentelemetry.sdk.trace import TracerProvider


def capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logs.setup("executor", "INFO", fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    return logging.getLogger("baton_test"), out


@pytest.fixture(autouse=True)
def restore() -> object:
    before = logging.getLogger().handlers[:]
    yield
    logging.getLogger().handlers[:] = before


def test_json_records_have_every_key_and_what_they_are_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, out = capture("json")
    task = c.StepDispatched(
        aggregate_id=uuid4(),
        correlation_id=uuid4(),
        workspace_id="acme",
        step_id="fetch",
        attempt=1,
        tool="http.request",
        input={},
        idempotency_key="k",
        timeout_s=1,
    )
    log.info("outside")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    tracer = TracerProvider().get_tracer("t")
    with logs.bound_to(task), tracer.start_as_current_span("step") as span:
        log.warning("inside %d", 1)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    keys = {"time", "level", "service", "logger", "message", "workspace_id", "execution_id"}
    assert keys | {"step_id", "trace_id", "span_id"} == set(first) == set(second)
    assert first["execution_id"] is None and first["trace_id"] is None
    assert second["message"] == "inside 1" and second["level"] == "warning"
    assert second["service"] == "executor"
    assert (second["workspace_id"], second["execution_id"], second["step_id"]) == (
        "acme",
        str(task.correlation_id),
        "fetch",
    )
    ctx = span.get_span_context()
    assert (
        second["trace_id"] == f"{ctx.trace_id:032x}" and second["span_id"] == f"{ctx.span_id:016x}"
    )


def test_text_lines_read_well_and_extra_fields_win() -> None:
    log, out = capture("text")
    log.info("hello", extra={"execution_id": "e1"})
    line = out.getvalue().strip()
    assert " executor INFO [execution=e1] baton_test: hello" in line
