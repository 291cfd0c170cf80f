"""Agents working together, on the in-memory store: the shared context, the messenger and the
smart cache, as the Execution aggregate records them (no worker: these steps run inline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.store import MemoryEventStore
from baton_common.views import fold
from baton_executor.application import ExecutorApp
from baton_executor.cache import MemoryCache, tokens_of, ttl_overrides
from baton_executor.context import MAX_VALUE_BYTES
from baton_executor.domain import Execution

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Engine:
    """An ExecutorApp fed the way the bus feeds it; tool workers are scripted by the test."""

    def __init__(self, cache: MemoryCache | None = None) -> None:
        self.store = MemoryEventStore("executor")
        self.app = ExecutorApp(self.store, results=cache)
        self.now = T0
        self.events: list[Any] = []
        self.timers: dict[str, Any] = {}

    def feed(self, event: Any) -> list[Any]:
        commit = self.app.handle([Delivery(event)], self.now)
        self.store.commit(commit)
        for t in commit.timers_clear:
            self.timers.pop(t, None)
        self.timers.update({t.timer_id: t for t in commit.timers_set})
        self.events += commit.events
        return list(commit.events)

    def start(self, plan: dict[str, Any]) -> UUID:
        eid = uuid4()
        self.feed(
            c.PlanProposed(
                aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=plan, planner="t"
            )
        )
        return eid

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        due = [t for t in self.timers.values() if t.due_at <= self.now]
        commit = self.app.fire(due, self.now)
        self.store.commit(commit)
        self.events += commit.events
        for t in commit.timers_clear:
            self.timers.pop(t, None)

    def finish_all(self, eid: UUID) -> None:
        """Answer every dispatched task that has no result yet, as a worker would."""
        done = {(e.step_id, e.attempt) for e in self.of(eid, c.StepSucceeded)}
        for d in [e for e in self.events if isinstance(e, c.StepDispatched)]:
            if (
                d.aggregate_id == eid
                and (d.step_id, d.attempt) not in done
                and d.tool
                not in (
                    "agent.request",
                    "agent.receive",
                )
            ):
                self.feed(
                    c.TaskFinished(
                        aggregate_id=eid,
                        step_id=d.step_id,
                        attempt=d.attempt,
                        ok=True,
                        output={"text": f"ran {d.step_id}"},
                        duration_ms=12.0,
                    )
                )

    def execution(self, eid: UUID) -> Execution:
        found = Execution.rebuild(eid, self.store.load(eid))
        assert found is not None
        return found

    def of(self, eid: UUID, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.aggregate_id == eid]

    def output(self, eid: UUID, step: str) -> Any:
        return next(e.output for e in self.of(eid, c.StepSucceeded) if e.step_id == step)


# --- the shared context ---------------------------------------------------------------------------

CONTEXT_PLAN = {
    "steps": [
        {"id": "w1", "tool": "context.set", "input": {"key": "offer", "value": {"price": 10}}},
        {"id": "w2", "tool": "context.set", "input": {"key": "offer", "value": {"price": 12}},
         "depends_on": ["w1"]},
        {"id": "side", "tool": "context.get", "input": {"key": "offer"}, "depends_on": ["w1"]},
        {"id": "r", "tool": "context.get", "input": {"key": "offer"}, "depends_on": ["w2"]},
        {"id": "none", "tool": "context.get", "input": {"key": "nope", "default": 7}},
    ]
}  # fmt: skip


def test_context_steps_run_inline_and_reads_follow_dependencies() -> None:
    engine = Engine()
    eid = engine.start(CONTEXT_PLAN)
    assert engine.of(eid, c.StepDispatched) == []  # no worker was asked
    assert engine.output(eid, "r") == {"value": {"price": 12}, "version": 2, "written_by": "w2"}
    # ``side`` runs beside w2: it sees w1's write, whatever the timing
    assert engine.output(eid, "side") == {"value": {"price": 10}, "version": 1, "written_by": "w1"}
    assert engine.output(eid, "none") == {"value": 7, "version": 0, "written_by": None}
    assert engine.of(eid, c.ExecutionSucceeded)
    writes = engine.of(eid, c.ContextWritten)
    assert [(w.key, w.version, w.written_by) for w in writes] == [
        ("offer", 1, "w1"),
        ("offer", 2, "w2"),
    ]
    assert engine.execution(eid).context["offer"][-1].value == {"price": 12}  # rebuilt


def test_replay_at_an_event_shows_the_context_then() -> None:
    engine = Engine()
    eid = engine.start(CONTEXT_PLAN)
    history = engine.store.load(eid)
    first = next(i for i, e in enumerate(history) if isinstance(e, c.ContextWritten))
    view = fold(history[: first + 1])
    assert view is not None and view["context"]["offer"]["value"] == {"price": 10}
    final = fold(history)
    assert final is not None and final["context"]["offer"]["version"] == 2


def test_a_value_over_the_limit_fails_the_step_naming_the_field() -> None:
    engine = Engine()
    big = "x" * (MAX_VALUE_BYTES + 10)
    eid = engine.start(
        {"steps": [{"id": "w", "tool": "context.set", "input": {"key": "k", "value": big}}]}
    )
    failed = engine.of(eid, c.StepFailed)
    assert failed and failed[0].final and "input.value" in failed[0].error
    assert "over the context limit" in failed[0].error
    assert engine.of(eid, c.ExecutionFailed)


def test_a_write_through_the_api_is_seen_by_later_steps() -> None:
    engine = Engine()
    eid = engine.start(
        {"steps": [
            {"id": "a", "tool": "mock.agent", "input": {"task": "a"}},
            {"id": "r", "tool": "context.get", "input": {"key": "k"}, "depends_on": ["a"]},
        ]}
    )  # fmt: skip
    engine.feed(c.ContextPutRequested(aggregate_id=eid, key="k", value=[1, 2], actor="ops"))
    engine.finish_all(eid)
    assert engine.output(eid, "r") == {"value": [1, 2], "version": 1, "written_by": "api:ops"}


# --- the workspace's context ----------------------------------------------------------------------


def _in(workspace: str, plan: dict[str, Any], engine: Engine) -> UUID:
    eid = uuid4()
    engine.feed(
        c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=plan,
                       planner="t", workspace_id=workspace)
    )  # fmt: skip
    return eid


WS_WRITE = {
    "steps": [
        {
            "id": "w",
            "tool": "context.set",
            "input": {"key": "budget", "value": {"max": 120}, "scope": "workspace"},
        }
    ]
}
WS_READ = {"steps": [{"id": "r", "tool": "context.get",
                      "input": {"key": "budget", "scope": "workspace", "default": None}}]}  # fmt: skip


def test_a_workspace_value_is_read_by_another_execution_of_the_workspace_only() -> None:
    engine = Engine()
    writer = _in("acme", WS_WRITE, engine)
    assert engine.output(writer, "w") == {"key": "budget", "version": 1}
    assert engine.of(writer, c.ContextWritten) == []  # not the execution's own context
    written = [e for e in engine.events if isinstance(e, c.WorkspaceContextWritten)]
    assert [(w.key, w.version, w.execution_id, w.step_id) for w in written] == [
        ("budget", 1, writer, "w")
    ]
    assert written[0].workspace_id == "acme" and written[0].correlation_id == writer
    reader = _in("acme", WS_READ, engine)
    assert engine.output(reader, "r") == {
        "value": {"max": 120}, "version": 1, "written_by": f"{writer}:w"
    }  # fmt: skip
    other = _in("globex", WS_READ, engine)
    assert engine.output(other, "r") == {"value": None, "version": 0, "written_by": None}
    own = _in("acme", {"steps": [{"id": "r", "tool": "context.get",
                                  "input": {"key": "budget", "default": 0}}]}, engine)  # fmt: skip
    assert engine.output(own, "r")["value"] == 0  # the default scope is still the execution's
    view = fold(engine.store.load(writer) + written)
    assert view is not None and view["workspace_context"]["budget"]["version"] == 1


def test_api_writes_and_deletes_of_a_workspace_key_count_its_versions() -> None:
    engine = Engine()

    def put(**change: Any) -> list[Any]:
        return engine.feed(
            c.WorkspaceContextPutRequested(
                aggregate_id=uuid4(), workspace_id="acme", key="k", actor="ops", **change
            )
        )

    assert [(e.version, e.value) for e in put(value=1)] == [(1, 1)]
    deleted = put(delete=True)
    assert [(type(e), e.version, e.written_by) for e in deleted] == [
        (c.WorkspaceContextDeleted, 2, "api:ops")
    ]
    assert put(delete=True) == []  # nothing to delete: nothing recorded
    reader = _in("acme", {"steps": [{"id": "r", "tool": "context.get",
                                     "input": {"key": "k", "scope": "workspace"}}]}, engine)  # fmt: skip
    assert engine.output(reader, "r")["version"] == 0
    assert [e.version for e in put(value=2)] == [3]
    # what the gateway refuses changes nothing here either (an old or forged request)
    assert put(value="x" * (MAX_VALUE_BYTES + 1)) == []
    assert engine.feed(c.WorkspaceContextPutRequested(aggregate_id=uuid4(), workspace_id="acme",
                                                      key="bad key", value=1)) == []  # fmt: skip


def test_a_dry_run_keeps_its_workspace_writes_to_itself() -> None:
    engine = Engine()
    plan = {"steps": [*WS_WRITE["steps"], {**WS_READ["steps"][0], "depends_on": ["w"]}]}
    eid = uuid4()
    engine.feed(
        c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=plan,
                       planner="t", workspace_id="acme", simulation={"mode": "dry_run"})
    )  # fmt: skip
    assert engine.output(eid, "r")["value"] == {"max": 120}  # its own write
    assert not [e for e in engine.events if isinstance(e, c.WorkspaceContextWritten)]
    real = _in("acme", WS_READ, engine)
    assert engine.output(real, "r")["value"] is None  # the workspace never got it


def test_a_workspace_scope_that_is_not_one_is_refused_with_the_plan() -> None:
    with pytest.raises(PlanInvalid, match="scope"):
        validate_plan({"steps": [{"id": "w", "tool": "context.set",
                                  "input": {"key": "k", "value": 1, "scope": "team"}}]})  # fmt: skip


# --- the messenger --------------------------------------------------------------------------------

NEGOTIATION = {
    "steps": [
        {"id": "ask", "tool": "agent.request",
         "input": {"from": "buyer", "to": "seller", "payload": {"offer": 10}, "timeout_s": 30}},
        {"id": "hear", "tool": "agent.receive",
         "input": {"agent": "seller", "timeout_s": 30}},
        {"id": "answer", "tool": "agent.send", "depends_on": ["hear"],
         "input": {"from": "seller", "to": "${steps.hear.output.from}", "type": "RESPONSE",
                   "in_reply_to": "${steps.hear.output.message_id}",
                   "payload": {"counter": 12}}},
        {"id": "note", "tool": "agent.send",
         "input": {"from": "buyer", "to": "seller", "type": "INFORM", "payload": "hello"}},
    ]
}  # fmt: skip


def test_request_and_response_between_two_steps() -> None:
    engine = Engine()
    eid = engine.start(NEGOTIATION)
    assert engine.output(eid, "ask")["payload"] == {"counter": 12}
    heard = engine.output(eid, "hear")
    assert heard["type"] == "REQUEST" and heard["payload"] == {"offer": 10}
    delivered = engine.of(eid, c.AgentMessageDelivered)
    assert [d.step_id for d in delivered] == ["hear", "ask"]  # each message once
    assert engine.of(eid, c.ExecutionSucceeded)
    view = fold(engine.store.load(eid))
    assert view is not None and [m["type"] for m in view["messages"]] == [
        "REQUEST", "RESPONSE", "INFORM",
    ]  # fmt: skip
    assert engine.execution(eid).waiters == {}


def test_messages_are_delivered_in_order_per_pair() -> None:
    engine = Engine()
    eid = engine.start(
        {"steps": [
            {"id": "s1", "tool": "agent.send", "input": {"from": "a", "to": "b", "type": "INFORM", "payload": 1}},
            {"id": "s2", "tool": "agent.send", "depends_on": ["s1"], "input": {"from": "a", "to": "b", "type": "INFORM", "payload": 2}},
            {"id": "r1", "tool": "agent.receive", "depends_on": ["s2"], "input": {"agent": "b", "timeout_s": 5}},
            {"id": "r2", "tool": "agent.receive", "depends_on": ["r1"], "input": {"agent": "b", "timeout_s": 5}},
        ]}
    )  # fmt: skip
    assert engine.output(eid, "r1")["payload"] == 1
    assert engine.output(eid, "r2")["payload"] == 2


def test_an_unanswered_request_times_out_with_a_clear_error() -> None:
    engine = Engine()
    eid = engine.start(
        {"steps": [
            {"id": "ask", "tool": "agent.request", "input": {"from": "a", "to": "b", "timeout_s": 5}},
            {"id": "b", "tool": "agent.receive", "input": {"agent": "b", "types": ["HANDOFF"], "timeout_s": 60}},
        ]}
    )  # fmt: skip
    engine.later(6)
    failed = engine.of(eid, c.StepFailed)
    assert failed[0].step_id == "ask" and "no RESPONSE from 'b'" in failed[0].error
    assert "within 5s" in failed[0].error
    engine.later(60)
    assert engine.of(eid, c.ExecutionFailed)


def test_a_message_to_an_unknown_agent_or_a_bad_timeout_is_refused() -> None:
    with pytest.raises(PlanInvalid, match="unknown agent 'nobody'"):
        validate_plan({"steps": [{"id": "s", "tool": "agent.send",
                                  "input": {"from": "a", "to": "nobody", "type": "INFORM"}}]})  # fmt: skip
    with pytest.raises(PlanInvalid, match="timeout_s"):
        validate_plan({"steps": [{"id": "s", "tool": "agent.receive",
                                  "input": {"agent": "a", "timeout_s": 0}}]})  # fmt: skip


def test_an_unknown_agent_from_a_reference_fails_the_step() -> None:
    engine = Engine()
    eid = engine.start(
        {"steps": [
            {"id": "n", "tool": "context.get", "input": {"key": "who", "default": "ghost"}},
            {"id": "s", "tool": "agent.send", "input": {"from": "a", "to": "${steps.n.output.value}", "type": "INFORM"}},
        ]}
    )  # fmt: skip
    failed = engine.of(eid, c.StepFailed)
    assert failed and "input.to: unknown agent 'ghost'" in failed[0].error


# --- the smart cache ------------------------------------------------------------------------------

READ_AND_WRITE = {
    "steps": [
        {"id": "fmt", "tool": "llm.generate", "input": {"prompt": "summarise the week"}},
        {"id": "save", "tool": "files.write", "input": {"path": "x.txt", "content": "hi"}},
    ]
}


def test_a_read_result_is_reused_and_a_write_never_is() -> None:
    engine = Engine(MemoryCache())
    first = engine.start(READ_AND_WRITE)
    engine.finish_all(first)
    second = engine.start(READ_AND_WRITE)
    dispatched = [d.step_id for d in engine.of(second, c.StepDispatched)]
    assert dispatched == ["save"]  # the template was not run again
    hit = next(e for e in engine.of(second, c.StepSucceeded) if e.step_id == "fmt")
    assert hit.cached_from == f"{first}:fmt" and hit.output == {"text": "ran fmt"}
    engine.finish_all(second)
    assert engine.of(second, c.ExecutionSucceeded)


def test_the_cache_expires_and_is_cleared() -> None:
    cache = MemoryCache()
    engine = Engine(cache)
    engine.finish_all(engine.start(READ_AND_WRITE))
    engine.feed(c.CacheClearRequested(aggregate_id=uuid4(), tool="llm.generate"))
    again = engine.start(READ_AND_WRITE)
    assert not [e for e in engine.of(again, c.StepSucceeded) if e.cached_from]
    assert [e.step_id for e in engine.of(again, c.StepWaiting)] == ["fmt"]  # its rate: not cached


def test_ttl_overrides_are_checked() -> None:
    assert ttl_overrides("llm.generate=600, files.read=0") == {"llm.generate": 600, "files.read": 0}
    with pytest.raises(ValueError, match="tool=seconds"):
        ttl_overrides("llm.generate")


# --- the agent API for tools ----------------------------------------------------------------------


class _Bus:
    """Collects what a tool publishes."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(self, events: list[Any]) -> None:
        self.published += events


async def test_a_python_tool_sends_a_message_that_a_plan_step_receives() -> None:
    from baton_executor.agent_api import AgentAPI

    engine = Engine()
    eid = engine.start(
        {"steps": [
            {"id": "work", "tool": "mock.agent", "input": {"task": "t"}},
            {"id": "hear", "tool": "agent.receive", "input": {"agent": "boss", "timeout_s": 30}},
            {"id": "me", "tool": "agent.send", "depends_on": ["hear"],
             "input": {"from": "worker", "to": "boss", "type": "INFORM"}},
        ]}
    )  # fmt: skip
    task = next(d for d in engine.of(eid, c.StepDispatched) if d.step_id == "work")
    bus = _Bus()
    api = AgentAPI(bus, task)  # type: ignore[arg-type]
    first = await api.send("worker", "boss", "HANDOFF", {"done": 1})
    again = AgentAPI(bus, task)  # the same call run again after a crash
    assert await again.send("worker", "boss", "HANDOFF", {"done": 1}) == first
    for posted in bus.published:
        engine.feed(posted)
    assert engine.output(eid, "hear")["payload"] == {"done": 1}
    assert len(engine.of(eid, c.AgentMessageSent)) == 2  # the tool's (once) and the step's
    assert bus.published[0].event_id == bus.published[1].event_id  # NATS drops the repeat


def test_a_dry_run_neither_reads_nor_fills_the_cache() -> None:
    cache = MemoryCache()
    engine = Engine(cache)
    real = engine.start(READ_AND_WRITE)
    engine.finish_all(real)
    eid = uuid4()
    engine.feed(
        c.PlanProposed(
            aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=READ_AND_WRITE,
            planner="t", simulation={"mode": "dry_run"},
        )
    )  # fmt: skip
    assert not [e for e in engine.of(eid, c.StepSucceeded) if e.cached_from]
    before = dict(cache.rows)
    engine.finish_all(eid)
    assert cache.rows == before


def test_the_tokens_a_cached_llm_answer_did_not_spend() -> None:
    assert tokens_of({"text": "x", "usage": {"input_tokens": 12, "output_tokens": 30}}) == 42
    assert tokens_of({"text": "x"}) == 0 and tokens_of("plain") == 0


class _NoBus:
    """A message that reaches the bus here would be one no step could ever receive."""

    async def publish(self, events: list[Any]) -> None:
        raise AssertionError(f"published {events}")


async def test_a_tool_task_names_the_plans_agents_and_the_api_refuses_others() -> None:
    from baton_executor.agent_api import AgentAPI
    from baton_executor.tools.base import ToolError

    e = Engine()
    e.start(
        {
            "steps": [
                {"id": "hi", "tool": "agent.send", "input": {"from": "alice", "to": "alice",
                                                             "type": "INFORM"}},
                {"id": "work", "tool": "mock.agent", "input": {"task": "x"}},
            ]
        }
    )  # fmt: skip
    [task] = [x for x in e.events if isinstance(x, c.StepDispatched) and x.step_id == "work"]
    assert task.agents == ["alice"]
    api = AgentAPI(_NoBus(), task)  # type: ignore[arg-type]
    for sender, to, field in (("alice", "bob", "to"), ("mallory", "alice", "sender")):
        with pytest.raises(ToolError) as refused:
            await api.send(sender, to, "INFORM")
        assert refused.value.retryable is False
        who = to if field == "to" else sender
        assert str(refused.value) == (
            f"ctx.agents: {field}: unknown agent {who!r} (this plan's agents: alice)"
        )
    with pytest.raises(ToolError, match=r"unknown agent 'bob' \(this plan's agents: alice\)"):
        await api.request("alice", "bob", timeout_s=30)
