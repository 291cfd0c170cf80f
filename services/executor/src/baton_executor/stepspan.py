"""The span of one step attempt in a worker: what it is tagged with, and how it ends.

Its parent is the executor's span that dispatched the attempt (the task's ``traceparent``); the
result carries this span's context, so the executor's handling of the outcome is its child, and
the tool's own calls (``http.request`` sends ``traceparent``) are its children too.
"""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.telemetry import traceparent_of
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode


def step_attributes(task: c.StepDispatched) -> dict[str, Any]:
    return {
        "baton.execution_id": str(task.aggregate_id),
        "baton.workspace_id": task.workspace_id,
        "baton.step_id": task.step_id,
        "baton.tool": task.tool,
        "baton.attempt": task.attempt,
        "baton.step_kind": task.kind,
        "baton.idempotency_key": task.idempotency_key,
    }


def finished(span: trace.Span, result: c.TaskFinished) -> c.TaskFinished:
    """Tag the span with the outcome; the result carries the span's trace context."""
    span.set_attribute("baton.outcome", "succeeded" if result.ok else "failed")
    span.set_attribute("baton.duration_ms", result.duration_ms)
    if not result.ok:
        span.set_status(Status(StatusCode.ERROR, (result.error or "failed")[:500]))
    traceparent = traceparent_of(span)
    return result.model_copy(update={"traceparent": traceparent}) if traceparent else result
