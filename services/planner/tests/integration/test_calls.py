"""The planner's saved-plan calls on real NATS JetStream and PostgreSQL, through the kit's
server: a call is a span continuing the caller's trace, and what it commits joins that trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_planner.main import start_planner

pytestmark = pytest.mark.integration
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE, CALLER = PARENT.split("-")[1:3]
PLAN = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "hi"}}]}


@pytest.fixture
async def planner(settings: Settings, bus: Bus) -> AsyncIterator[Runtime]:
    runtime = await start_planner(settings)
    yield runtime
    await runtime.close()


async def call(bus: Bus, op: str, name: str, **body: Any) -> c.PlanReply:
    request = c.PlanCall(op=op, workspace_id="acme", actor="alice", name=name, body=body)
    subject = c.planner_subject(bus.settings.subject_root)
    data = request.model_dump_json().encode()
    msg = await bus.request(subject, data, 30, headers={"traceparent": PARENT})
    return c.PlanReply.model_validate_json(msg.data)


async def test_a_saved_plan_call_continues_the_callers_trace(
    spans: Any, planner: Runtime, bus: Bus
) -> None:
    reply = await call(bus, "push", "greet", plan=PLAN, message="first")
    assert reply.status == 201, reply.detail
    [served] = [s for s in spans.get_finished_spans() if s.name == "planner call"]
    assert served.attributes is not None and served.attributes["baton.rpc.verb"] == "push"
    assert f"{served.context.trace_id:032x}" == TRACE
    assert served.parent is not None and f"{served.parent.span_id:016x}" == CALLER
    assert planner.store is not None
    events = planner.store.load(c.saved_plan_id("acme", "greet"))
    assert events and all(e.traceparent and e.traceparent.split("-")[1] == TRACE for e in events)


async def test_a_malformed_saved_plan_call_is_a_422(planner: Runtime, bus: Bus) -> None:
    subject = c.planner_subject(bus.settings.subject_root)
    msg = await bus.request(subject, b'{"op": "push", "workspace_id": 7}', 30)
    reply = c.PlanReply.model_validate_json(msg.data)
    assert reply.status == 422 and "workspace_id" in reply.detail


async def test_a_draft_is_answered_by_its_handler_in_the_verb_table(
    spans: Any, planner: Runtime, bus: Bus
) -> None:
    reply = await call(bus, "draft", "", request="read notes.md and summarise it")
    assert reply.status == 200, reply.detail
    assert [s["tool"] for s in reply.body["plan"]["steps"]] == ["files.read", "llm.generate"]
    served = [s for s in spans.get_finished_spans() if s.name == "planner call"]
    assert [s.attributes and s.attributes["baton.rpc.verb"] for s in served] == ["draft"]
