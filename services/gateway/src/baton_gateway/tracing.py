"""A server span per HTTP request: the root of an execution's trace (or a child of the caller's
``traceparent``). Events the request records carry its context (``current_traceparent``).

Written as a small ASGI middleware rather than with opentelemetry-instrumentation-fastapi: it is
the one span the gateway needs, it leaves SSE streams untouched, and it spares a dependency.
"""

from __future__ import annotations

from typing import Any

from baton_common.telemetry import context_from, exporting, tracer
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class TraceRequests:
    """Wraps the app: each HTTP request runs inside its server span (when spans are exported)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not exporting():
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        with tracer().start_as_current_span(
            f"{method} {path}",
            context=context_from(headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_status)
            if route := _template(scope):
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)


def _template(scope: Scope) -> str | None:
    route: Any = scope.get("route")
    return getattr(route, "path", None)
