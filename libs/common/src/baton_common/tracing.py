"""One trace per execution: a span per handled message, parented by the message's trace context,
and the events a handler emits carry the span of the message that caused them.

Every event's ``causation_id`` names the event it came from, so after a batch is handled each new
event is given the ``traceparent`` of the span that handled its cause. The next service's span
for it is then that span's child, and the whole execution (HTTP request → planner → executor →
worker → hitl → …) forms one tree in any tracing back end.

Only when spans are exported (``telemetry.exporting()``): otherwise a batch keeps the one span it
always had, and nothing per message is spent on spans nobody can see.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.telemetry import context_from, exporting, traceparent_of, tracer


class Received(Protocol):
    """A message in hand, as tracing reads it: its event and the trace context it came with (a
    consumer's ``Delivery`` is one)."""

    @property
    def event(self) -> Event: ...

    @property
    def context(self) -> otel_context.Context: ...


def attributes(event: Event) -> dict[str, Any]:
    """What a span about ``event`` is tagged with (the execution, the workspace, the event)."""
    return {
        "baton.execution_id": str(event.correlation_id or event.aggregate_id),
        "baton.workspace_id": event.workspace_id,
        "baton.event_type": event.type,
        "messaging.message.id": str(event.event_id),
    }


@contextlib.contextmanager
def handling(consumer: str, deliveries: Sequence[Received]) -> Iterator[dict[UUID, str]]:
    """Spans around handling ``deliveries``; yields {cause event id: traceparent to stamp}."""
    if not exporting():
        with tracer().start_as_current_span(
            f"consume {consumer}", context=deliveries[0].context, kind=trace.SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.batch.message_count", len(deliveries))
            yield {}
        return
    spans = [
        tracer().start_span(
            f"{consumer} {d.event.type}",
            context=d.context,
            kind=trace.SpanKind.CONSUMER,
            attributes={**attributes(d.event), "messaging.consumer.group.name": consumer},
        )
        for d in deliveries
    ]
    causes = {
        d.event.event_id: tp
        for d, s in zip(deliveries, spans, strict=True)
        if (tp := traceparent_of(s))
    }
    # One message: its span is the current one (logs written meanwhile carry its ids).
    current = (
        trace.use_span(spans[0], record_exception=False, set_status_on_exception=False)
        if len(spans) == 1
        else contextlib.nullcontext()
    )
    try:
        with current:
            yield causes
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        for span in spans:
            span.end()


def stamped(events: Sequence[Event], causes: dict[UUID, str]) -> Sequence[Event]:
    """``events`` with the traceparent of the span that handled each one's cause."""
    if not causes:
        return events
    return [
        e.model_copy(update={"traceparent": causes[e.causation_id]})
        if e.causation_id in causes
        else e
        for e in events
    ]


@contextlib.contextmanager
def serving(
    name: str, headers: Mapping[str, str] | None, attributes: dict[str, Any] | None = None
) -> Iterator[None]:
    """A server span around answering a request (request/reply over NATS), child of the
    caller's ``traceparent``: what the answer records joins the caller's trace."""
    if not exporting():
        yield
        return
    with tracer().start_as_current_span(
        name, context=context_from(headers), kind=trace.SpanKind.SERVER, attributes=attributes
    ):
        yield


def begin(
    name: str,
    events: Sequence[Event],
    parent: otel_context.Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> Sequence[Event]:
    """Events that start something without a message behind them (a schedule's tick, a received
    webhook): one span per execution they are about, the root of its trace (or a child of
    ``parent``, or of the current span: a request being served), stamped on those that carry no
    trace context yet."""
    if not exporting():
        return events
    roots: dict[Any, str | None] = {}
    out = []
    for e in events:
        if e.traceparent:
            out.append(e)
            continue
        key = e.correlation_id or e.aggregate_id
        if key not in roots:
            span = tracer().start_span(name, context=parent, kind=kind, attributes=attributes(e))
            span.end()
            roots[key] = traceparent_of(span)
        tp = roots[key]
        out.append(e.model_copy(update={"traceparent": tp}) if tp else e)
    return out


# --- a step attempt's span (a worker, or a service that runs its own tools) -----------------------


def step_attributes(task: c.StepDispatched) -> dict[str, Any]:
    """The span of one step attempt: its parent is the executor's span that dispatched it."""
    return {
        "baton.execution_id": str(task.aggregate_id),
        "baton.workspace_id": task.workspace_id,
        "baton.step_id": task.step_id,
        "baton.tool": task.tool,
        "baton.attempt": task.attempt,
        "baton.step_kind": task.kind,
        "baton.idempotency_key": task.idempotency_key,
    }


def step_finished(span: trace.Span, result: c.TaskFinished) -> c.TaskFinished:
    """Tag the span with the outcome; the result carries the span's context, so the executor's
    handling of it is the step span's child (and the tool's own calls are its children too)."""
    span.set_attribute("baton.outcome", "succeeded" if result.ok else "failed")
    span.set_attribute("baton.duration_ms", result.duration_ms)
    if not result.ok:
        span.set_status(Status(StatusCode.ERROR, (result.error or "failed")[:500]))
    traceparent = traceparent_of(span)
    return result.model_copy(update={"traceparent": traceparent}) if traceparent else result


_OPEN_INLINE: dict[tuple[UUID, str, int, str], c.StepDispatched] = {}  # dispatched, not ended
_OPEN_KEPT = 10_000


def ran_inline(events: Sequence[Event]) -> None:
    """Spans of the step attempts the executor ran itself (pure tools, ``inline``), once their
    outcome is committed: a child of the span that decided them, timed from the dispatch to the
    outcome, tagged like a worker's step span. A step run after the commit that dispatched it
    ends in a later commit. Only when spans are exported."""
    if not exporting():
        return
    for e in c.unfolded(events):  # a pure step's one event stands for its dispatch too
        if isinstance(e, c.StepDispatched) and e.inline:
            _OPEN_INLINE[(e.aggregate_id, e.step_id, e.attempt, e.kind)] = e
    while len(_OPEN_INLINE) > _OPEN_KEPT:  # a restart's steps end in another process
        _OPEN_INLINE.pop(next(iter(_OPEN_INLINE)))
    for outcome in events:
        if not isinstance(outcome, c.StepSucceeded | c.StepFailed):
            continue
        task = _OPEN_INLINE.pop(
            (outcome.aggregate_id, outcome.step_id, outcome.attempt, outcome.kind), None
        )
        if task is None:
            continue
        start = int(task.occurred_at.timestamp() * 1e9)
        if isinstance(outcome, c.StepSucceeded) and outcome.call is not None:
            start -= int(outcome.duration_ms * 1e6)  # dispatched and settled in one event
        span = tracer().start_span(
            f"step {task.step_id} {task.tool}",
            context=context_from({"traceparent": task.traceparent} if task.traceparent else None),
            attributes={**step_attributes(task), "baton.inline": True},
            start_time=start,
        )
        ok = isinstance(outcome, c.StepSucceeded)
        span.set_attribute("baton.outcome", "succeeded" if ok else "failed")
        if isinstance(outcome, c.StepFailed):
            span.set_status(Status(StatusCode.ERROR, (outcome.error or "failed")[:500]))
        end = int(outcome.occurred_at.timestamp() * 1e9)
        span.end(end_time=max(end, start))
