"""One trace per execution, on the engine as processes exporting over OTLP/HTTP to a receiver in
this test: the spans of a request that crosses the gateway, the planner, the executor, the
approval service, a worker (whose ``http.request`` call carries ``traceparent`` to the callee) and
the projector form one tree with the right parents; ``baton trace`` prints it from the events."""

from __future__ import annotations

import gzip
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py
from uuid import UUID

import httpx
import pytest
from baton_common.approvals import PLAN_GATE, approval_id_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

pytestmark = pytest.mark.e2e
SERVICES = {"gateway", "planner", "executor", "hitl", "worker", "projector"}


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace receiver, and the callee of the plan's ``http.request``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.spans: list[dict[str, Any]] = []
        self.callee_headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            service = attrs.get("service.name", "").removeprefix("baton-")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    found.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        with self.server.lock:
            self.server.spans += found
        self._answer(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.callee_headers.append(dict(self.headers))
        self._answer(b'{"ok": true}', "application/json")

    def _answer(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def receiver() -> Any:
    server = Receiver()
    yield server
    server.shutdown()


def test_an_execution_is_one_trace_across_every_service(own_engine: Any, receiver: Any) -> None:
    engine: Engine = own_engine(
        {
            "OTEL_SDK_DISABLED": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
    )
    body = {"request": f"fetch {receiver.url}/hook", "review_plan": True}
    eid = engine.http.post(f"{engine.url}/v1/executions", json=body).json()["id"]
    gate = approval_id_for(UUID(eid), PLAN_GATE)
    decided = None
    for _ in range(300):  # the planner drafts, the executor holds it, hitl opens the gate
        decided = engine.http.post(
            f"{engine.url}/v1/approvals/{gate}/decision", json={"decision": "approve"}
        )
        if decided.status_code == 200:
            break
        time.sleep(0.1)
    assert decided is not None and decided.status_code == 200, decided.text
    view = engine.wait(eid)
    assert view["status"] == "succeeded", view
    assert len(receiver.callee_headers) == 1
    callee = receiver.callee_headers[0]
    trace_id = callee["traceparent"].split("-")[1]

    spans = _complete_trace(receiver, trace_id)
    by_id = {s["span_id"]: s for s in spans}
    roots = [s for s in spans if not s["parent"]]
    assert [(r["service"], r["name"]) for r in roots] == [("gateway", "POST /v1/executions")]
    orphans = [s for s in spans if s["parent"] and s["parent"] not in by_id]
    assert not orphans, orphans
    assert SERVICES <= {s["service"] for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent"]]

    step = next(s for s in spans if s["service"] == "worker")
    assert step["attributes"] | {"baton.execution_id": eid} == step["attributes"]
    assert {"baton.step_id", "baton.tool", "baton.attempt", "baton.idempotency_key"} <= set(
        step["attributes"]
    )
    assert step["attributes"]["baton.tool"] == "http.request"
    assert step["attributes"]["baton.outcome"] == "succeeded"
    # The callee's parent is the step's span; the step's parent the executor's dispatch.
    assert callee["traceparent"].split("-")[2] == step["span_id"]
    assert parent(step)["service"] == "executor"
    planned = next(s for s in spans if s["service"] == "planner")
    assert planned["name"] == "planner execution.requested"
    # (FastAPI adds its own span for the endpoint, under the request's)
    assert parent(planned)["service"] == "gateway"
    assert roots[0] in (parent(planned), parent(parent(planned)))
    hitl = next(s for s in spans if s["service"] == "hitl")
    assert parent(hitl)["service"] == "executor"
    finished = next(s for s in spans if s["name"] == "executor task.finished")
    assert parent(finished) == step

    pure_steps_have_their_spans(engine, receiver)
    webhook_starts_its_own_trace(engine, receiver)
    schedule_tick_starts_its_own_trace(engine, receiver)
    # The decision was its own request: the hitl service answered it inside that request's trace.
    decision = next(s for s in receiver.spans if s["name"] == "hitl decision")
    callers = [s for s in receiver.spans if s["span_id"] == decision["parent"]]
    assert callers and callers[0]["service"] == "gateway"

    printed = engine.cli("trace", eid)
    assert printed.returncode == 0, printed.stderr
    assert "execution.requested" in printed.stdout and "task.finished" not in printed.stdout
    assert "http.request" in printed.stdout and "execution.succeeded" in printed.stdout
    assert f"trace {trace_id}" in printed.stdout and "[planner span " in printed.stdout, (
        printed.stdout
    )


def pure_steps_have_their_spans(engine: Engine, receiver: Any) -> None:
    """A step the executor runs itself (a template) has its span too, in the same trace, a
    child of the executor's span that decided it, timed and tagged like a worker's."""
    plan = {
        "steps": [
            {"id": "text", "tool": "text.template", "input": {"template": "hi"}},
            {
                "id": "call",
                "tool": "http.request",
                "input": {"url": f"{receiver.url}/pure"},
                "depends_on": ["text"],
            },
        ]
    }
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    assert engine.wait(eid)["status"] == "succeeded"
    trace_id = receiver.callee_headers[-1]["traceparent"].split("-")[1]
    spans = _complete_trace(receiver, trace_id, {"gateway", "executor", "worker"})
    by_id = {s["span_id"]: s for s in spans}
    pure = next(s for s in spans if s["attributes"].get("baton.tool") == "text.template")
    assert pure["service"] == "executor" and pure["attributes"]["baton.inline"] is True
    assert pure["attributes"]["baton.outcome"] == "succeeded"
    assert pure["attributes"]["baton.execution_id"] == eid
    assert by_id[pure["parent"]]["service"] == "executor"


def webhook_starts_its_own_trace(engine: Engine, receiver: Any) -> None:
    """A received webhook is the root of the trace of the execution it starts."""
    plan = {
        "steps": [{"id": "call", "tool": "http.request", "input": {"url": f"{receiver.url}/w"}}]
    }
    body = {"name": "traced", "scheme": "none", "allow_unsigned": True, "action": {"plan": plan}}
    made = engine.http.post(f"{engine.url}/v1/webhooks/endpoints", json=body)
    assert made.status_code == 201, made.text
    sent = httpx.post(made.json()["url"], json={"n": 1}, timeout=30)
    assert sent.status_code == 202, sent.text
    assert engine.wait(sent.json()["execution_id"])["status"] == "succeeded"
    trace_id = receiver.callee_headers[-1]["traceparent"].split("-")[1]
    spans = _complete_trace(receiver, trace_id, {"webhook", "gateway", "executor", "worker"})
    roots = [(s["service"], s["name"]) for s in spans if not s["parent"]]
    assert roots == [("webhook", "POST /hooks/{endpoint}")]
    ids = {s["span_id"] for s in spans}
    assert all(s["parent"] in ids for s in spans if s["parent"])


def schedule_tick_starts_its_own_trace(engine: Engine, receiver: Any) -> None:
    """A schedule's tick (its timer, no request behind it) is the root of the trace of the
    execution it starts: through the gateway's intake, the planner, the executor and the step."""
    plan = {
        "steps": [{"id": "call", "tool": "http.request", "input": {"url": f"{receiver.url}/tick"}}]
    }
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = {"name": "traced tick", "at": soon, "plan": plan}
    made = engine.http.post(f"{engine.url}/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    listed: list[Any] = []
    for _ in range(600):
        query = {"schedule": made.json()["id"]}
        listed = engine.http.get(f"{engine.url}/v1/executions", params=query).json()["items"]
        if listed:
            break
        time.sleep(0.1)
    assert listed, "the tick started nothing"
    assert engine.wait(listed[0]["id"])["status"] == "succeeded"
    trace_id = receiver.callee_headers[-1]["traceparent"].split("-")[1]
    services = {"scheduler", "gateway", "planner", "executor", "worker"}
    spans = _complete_trace(receiver, trace_id, services)
    roots = [(s["service"], s["name"]) for s in spans if not s["parent"]]
    assert roots == [("scheduler", "schedule tick")], roots
    ids = {s["span_id"] for s in spans}
    assert all(s["parent"] in ids for s in spans if s["parent"])
    assert services <= {s["service"] for s in spans}


def _complete_trace(
    receiver: Any, trace_id: str, services: set[str] = SERVICES
) -> list[dict[str, Any]]:
    """The trace once every span it names has arrived (exports come in batches)."""
    spans: list[dict[str, Any]] = []
    for _ in range(200):
        spans = receiver.trace(trace_id)
        ids = {s["span_id"] for s in spans}
        names = {s["name"] for s in spans}
        complete = all(not s["parent"] or s["parent"] in ids for s in spans)
        if complete and services <= {s["service"] for s in spans}:
            if "executor task.finished" in names:
                return spans
        time.sleep(0.1)
    return spans
