"""Trace context per message: a span per handled message, parented by the message's context,
and each emitted event stamped with the span of the event that caused it."""

from __future__ import annotations

from uuid import uuid4

from baton_common import contracts as c
from baton_common import tracing
from baton_common.consumer import Delivery
from baton_common.telemetry import context_from
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_each_message_gets_a_child_span_and_its_effects_carry_it(
    spans: InMemorySpanExporter,
) -> None:
    cause = c.ExecutionCancelRequested(aggregate_id=uuid4(), traceparent=PARENT)
    other = c.ExecutionCancelRequested(aggregate_id=uuid4())
    deliveries = [
        Delivery(cause, None, context_from({"traceparent": PARENT})),
        Delivery(other, None, context_from({})),
    ]
    with tracing.handling("executor", deliveries) as causes:
        effect = c.ExecutionCancelled(aggregate_id=cause.aggregate_id, causation_id=cause.event_id)
        unrelated = c.ExecutionCancelled(aggregate_id=uuid4(), traceparent="kept")
        out = tracing.stamped([effect, unrelated], causes)
    done = {s.attributes["baton.execution_id"]: s for s in spans.get_finished_spans()}  # type: ignore[index]
    mine = done[str(cause.aggregate_id)]
    assert mine.name == "executor execution.cancel_requested"
    assert mine.parent is not None and f"{mine.parent.span_id:016x}" == PARENT.split("-")[2]
    assert f"{mine.context.trace_id:032x}" == PARENT.split("-")[1]
    assert out[0].traceparent == f"00-{PARENT.split('-')[1]}-{mine.context.span_id:016x}-01"
    assert out[1].traceparent == "kept"
    assert done[str(other.aggregate_id)].parent is None  # no context: a root of its own


def test_without_export_a_batch_keeps_one_span_and_events_are_untouched() -> None:
    event = c.ExecutionCancelRequested(aggregate_id=uuid4())
    with tracing.handling("executor", [Delivery(event)]) as causes:
        assert causes == {}
    effect = c.ExecutionCancelled(aggregate_id=uuid4(), causation_id=event.event_id)
    assert tracing.stamped([effect], causes) == [effect]


def test_a_tick_or_a_webhook_starts_one_trace_per_execution(spans: InMemorySpanExporter) -> None:
    one, two = uuid4(), uuid4()
    asks = [
        c.ExecutionCancelRequested(aggregate_id=one, correlation_id=one),
        c.ExecutionCancelRequested(aggregate_id=uuid4(), correlation_id=one),
        c.ExecutionCancelRequested(aggregate_id=two, correlation_id=two),
        c.ExecutionCancelRequested(aggregate_id=two, traceparent=PARENT),
    ]
    out = tracing.begin("schedule tick", asks)
    assert out[0].traceparent == out[1].traceparent != out[2].traceparent
    assert out[3].traceparent == PARENT  # already in a trace: left alone
    roots = spans.get_finished_spans()
    assert len(roots) == 2 and all(s.parent is None and s.name == "schedule tick" for s in roots)
