"""OpenTelemetry: one tracer provider per process, W3C trace context in NATS headers.

The OTLP exporter is configured only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: without a
collector, spans stay in process and nothing blocks at shutdown.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured = False


_exporting = False
_provider: TracerProvider | None = None


def setup(service: str) -> None:
    """Install the tracer provider (idempotent); export over OTLP (HTTP/protobuf) only when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``…_TRACES_ENDPOINT``) is set and the SDK is enabled."""
    global _configured, _exporting, _provider
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"baton-{service}"}))
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if endpoint and os.environ.get("OTEL_SDK_DISABLED", "").lower() != "true":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        _exporting = True
    trace.set_tracer_provider(provider)
    _provider = provider
    global _tracer
    _tracer = None  # bind to the new provider on next use
    _configured = True


def exporting() -> bool:
    """Spans leave the process: worth a span per message and trace context per event. Without
    an exporter, the hot paths keep to one span per batch (nobody could see the others)."""
    return _exporting


def shutdown(timeout_s: float = 5.0) -> None:
    """Send the spans still buffered (bounded wait: a gone collector must not hold a drain)."""
    if _provider is not None and _exporting:
        _provider.force_flush(int(timeout_s * 1000))


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` naming ``span`` (None for a span that records nothing)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The process's tracer (looked up once: ``get_tracer`` is not free on a hot path)."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("baton")
    return _tracer


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from(headers: Mapping[str, str] | None) -> context.Context:
    """The trace context carried in a message's headers (empty context when there is none)."""
    return _propagator.extract(dict(headers or {}))


def setup_logging(service: str, level: str = "INFO") -> None:
    """Structured logs (``baton_common.logs``): kept here for the callers that set up both."""
    from baton_common import logs

    logs.setup(service, level)
