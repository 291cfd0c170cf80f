"""Simulation data: mock profiles, dry-run outputs from the catalogue, recordings."""

from __future__ import annotations

from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.simulation import (
    Simulation,
    SimulationInvalid,
    dry_run_output,
    example_of,
    parse_profile,
    recordings_from,
    runs_in_dry_run,
)


def test_a_profile_naming_an_unknown_tool_is_refused_with_the_known_ones() -> None:
    profile = parse_profile("tools:\n  http.requets:\n    failure_rate: 0.5\n")
    with pytest.raises(SimulationInvalid, match=r"unknown tool\(s\) 'http.requets'.*http.request"):
        profile.check()
    with pytest.raises(SimulationInvalid, match="failure_rate"):
        parse_profile({"tools": {"http.request": {"failure_rate": 2}}})
    with pytest.raises(SimulationInvalid, match="does not have"):
        parse_profile({"steps": {"nope": {}}}).check(step_ids={"a"})


def test_latency_shorthand_and_distributions() -> None:
    profile = parse_profile({"tools": {"files.write": {"latency_ms": 120}}})
    assert profile.tools["files.write"].latency.mean_ms == 120


def test_dry_run_outputs_fill_in_the_input_or_follow_the_schema() -> None:
    write = DEFAULT_CATALOGUE.get("files.write")
    assert write is not None and not runs_in_dry_run(write)
    assert dry_run_output(write, {"path": "a.md", "content": "x"}) == {"path": "a.md", "bytes": 0}
    read = DEFAULT_CATALOGUE.get("files.read")
    assert read is not None and runs_in_dry_run(read)
    assert dry_run_output(read, {"path": "a"}) == {"content": ""}
    assert example_of({"type": "object", "properties": {"n": {"type": "integer"}}}) == {"n": 0}
    for spec in DEFAULT_CATALOGUE.all():  # every tool has a dry-run answer
        assert dry_run_output(spec, {}) is not None


def test_recordings_pair_calls_with_their_results_by_attempt() -> None:
    eid = uuid4()
    common = {"aggregate_id": eid, "step_id": "a", "tool": "mock.agent", "input": {"task": "t"}}
    history = [
        c.StepDispatched(**common, attempt=1, idempotency_key="k", timeout_s=5),
        c.StepFailed(aggregate_id=eid, step_id="a", attempt=1, error="boom"),
        c.StepDispatched(**common, attempt=2, idempotency_key="k", timeout_s=5),
        c.StepSucceeded(aggregate_id=eid, step_id="a", attempt=2, output={"result": 1}),
    ]
    [rec] = recordings_from(history)
    assert [(r.attempt, r.ok) for r in rec.results] == [(1, False), (2, True)]
    sim = Simulation(mode="replay", recordings=[rec])
    args = {"step_id": "a", "kind": "run", "tool": "mock.agent", "gate": None}
    first = sim.directive(DEFAULT_CATALOGUE, tool_input={"task": "t"}, attempt=1, **args)
    assert first is not None and first["recorded"]["error"] == "boom"
    other = sim.directive(DEFAULT_CATALOGUE, tool_input={"task": "u"}, attempt=1, **args)
    assert other is not None and other["unrecorded"] == "input differs from the recording"


def test_a_step_the_cache_answered_is_recorded_with_its_resolved_input() -> None:
    eid = uuid4()
    plan = {
        "steps": [
            {"id": "a", "tool": "mock.agent", "input": {"task": "a"}},
            {"id": "ask", "tool": "llm.generate", "depends_on": ["a"],
             "input": {"prompt": "about ${steps.a.output.result} for ${input.who}"}},
        ]
    }  # fmt: skip
    history = [
        c.ExecutionStarted(aggregate_id=eid, plan=plan, inputs={"who": "ann"}),
        c.StepDispatched(
            aggregate_id=eid,
            step_id="a",
            attempt=1,
            tool="mock.agent",
            input={"task": "a"},
            idempotency_key="k",
            timeout_s=5,
        ),
        c.StepSucceeded(aggregate_id=eid, step_id="a", attempt=1, output={"result": "x"}),
        c.StepSucceeded(
            aggregate_id=eid,
            step_id="ask",
            attempt=1,
            output={"text": "hi"},
            cached_from="other:ask",
        ),
    ]
    by_step = {r.step_id: r for r in recordings_from(history)}
    ask = by_step["ask"]
    assert (ask.tool, ask.input) == ("llm.generate", {"prompt": "about x for ann"})
    assert ask.results[0].output == {"text": "hi"}


def test_a_request_folded_after_the_start_keeps_the_calls_listed() -> None:
    """The gateway's request and the executor's events come from two producers: the stream may
    carry the start and a dispatch before the request."""
    from baton_common.views import fold

    eid = uuid4()
    plan = {"steps": [{"id": "post", "tool": "http.request", "input": {"url": "http://x"}}]}
    mark = {"mode": "dry_run"}
    envelope = {"aggregate_id": eid, "workspace_id": "w", "correlation_id": eid}
    requested = c.ExecutionRequested(**envelope, aggregate_version=1, plan=plan, simulation=mark)
    started = c.ExecutionStarted(**envelope, aggregate_version=1, plan=plan, simulation=mark)
    dispatched = c.StepDispatched(
        **envelope, aggregate_version=2, step_id="post", attempt=1, tool="http.request",
        input={"url": "http://x"}, idempotency_key="k", timeout_s=5, simulated={"real": False},
    )  # fmt: skip
    for order in ([requested, started, dispatched], [started, dispatched, requested]):
        view = fold(order)
        assert len(view["simulation"]["calls"]) == 1, [e.type for e in order]
