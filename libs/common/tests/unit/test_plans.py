"""Plan validation and references."""

from __future__ import annotations

import time

import pytest
from baton_common.plans import (
    PlanInvalid,
    ReferenceError_,
    evaluate_condition,
    resolve,
    validate_plan,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _acyclic(edges: dict[str, set[str]]) -> bool:
    done: set[str] = set()
    while len(done) < len(edges):
        ready = [n for n, deps in edges.items() if n not in done and deps <= done]
        if not ready:
            return False
        done.update(ready)
    return True


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict, bool]:
    n = draw(st.integers(1, 7))
    ids = [f"s{i}" for i in range(n)]
    names = [*ids, "ghost"]  # a dangling reference now and then
    steps, edges, dangling = [], {}, False
    for sid in ids:
        deps = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
        refs = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        dangling |= "ghost" in deps or "ghost" in refs or sid in deps or sid in refs
        prompt = " ".join(f"${{steps.{r}.output.text}}" for r in refs) or "hello"
        steps.append(
            {"id": sid, "tool": "llm.generate", "depends_on": deps, "input": {"prompt": prompt}}
        )
        edges[sid] = {d for d in [*deps, *refs] if d != "ghost"}
    return {"steps": steps}, (not dangling and _acyclic(edges))


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_validation_accepts_exactly_the_acyclic_well_referenced_graphs(
    case: tuple[dict, bool],
) -> None:
    plan, expected = case
    try:
        validated = validate_plan(plan)
    except PlanInvalid:
        assert not expected
        return
    assert expected
    order = validated.order()
    for step in validated.steps:  # every step comes after everything it needs
        assert all(order.index(d) < order.index(step.id) for d in step.needs())


@pytest.mark.parametrize("forwards", [True, False])
def test_a_thousand_step_chain_is_checked_and_ordered_in_linear_time(forwards: bool) -> None:
    """Deeper than Python's recursion limit, and a thousand waves to order."""
    ids = [f"s{i}" for i in range(1000)]
    after = {a: b for a, b in zip(ids[1:], ids, strict=False)}  # s1 needs s0 …
    if not forwards:
        after = {b: a for a, b in after.items()}  # s0 needs s1 …
    steps = [{"id": i, "tool": "text.template", "input": {"template": "x"}} for i in ids]
    for step in steps:
        step["depends_on"] = [after[step["id"]]] if step["id"] in after else []
    started = time.perf_counter()
    order = validate_plan({"steps": steps}).order()
    assert order == (ids if forwards else ids[::-1])
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("text", ["${" + " " * 20_000, "${a" + " " * 20_000, "${a" * 7_000])
def test_references_are_found_in_linear_time(text: str) -> None:
    """The lazy pattern once took 20 s over ``${`` and 2,000 spaces (the gateway's and the
    planner's event loops stood still meanwhile)."""
    started = time.perf_counter()
    plan = {"steps": [{"id": "a", "tool": "text.template", "input": {"template": text}}]}
    validate_plan(plan)
    assert time.perf_counter() - started < 1


def test_references_keep_their_reading() -> None:
    scope = {"input": {"x": 1, "name": "ann"}}
    assert resolve("${ input.x }", scope) == 1  # a whole reference keeps its type
    assert resolve("hi ${input.name}, ${ input.x }!", scope) == "hi ann, 1!"
    assert resolve("${}", scope) == "${}" and resolve("$5 {x}", scope) == "$5 {x}"


def test_order_runs_ready_steps_in_waves_in_plan_order() -> None:
    plan = validate_plan(
        {
            "steps": [
                {"id": "c", "tool": "text.template", "input": {"template": "x"}, "depends_on": ["b"]},
                {"id": "b", "tool": "text.template", "input": {"template": "x"}, "depends_on": ["z"]},
                {"id": "z", "tool": "text.template", "input": {"template": "x"}},
                {"id": "a", "tool": "text.template", "input": {"template": "x"}, "depends_on": ["z"]},
                {"id": "y", "tool": "text.template", "input": {"template": "x"}},
            ]
        }
    )  # fmt: skip
    assert plan.order() == ["z", "y", "b", "a", "c"]


def test_a_cycle_is_named_from_its_first_step() -> None:
    steps = [
        {"id": i, "tool": "text.template", "input": {"template": "x"}, "depends_on": [d]}
        for i, d in (("a", "b"), ("b", "c"), ("c", "a"))
    ]
    with pytest.raises(PlanInvalid, match="cycle: a -> c -> b -> a"):
        validate_plan({"steps": steps})


def test_problems_name_the_step_and_the_field() -> None:
    with pytest.raises(PlanInvalid) as err:
        validate_plan({"steps": [{"id": "a", "tool": "time.sleep", "input": {"seconds": -1}},
                                 {"id": "b", "tool": "http.request", "input": {"url": "ftp://x"}}]})  # fmt: skip
    problems = {(p.step, p.field) for p in err.value.problems}
    assert problems == {("a", "input.seconds"), ("b", "input.url")}


def test_approval_policies_are_validated_and_a_critical_gate_cannot_be_switched_off() -> None:
    plan = validate_plan(
        {
            "steps": [
                {"id": "a", "tool": "mock.agent", "requires_approval": True},
                {
                    "id": "b",
                    "tool": "mock.agent",
                    "approval": {"deadline": "PT5M", "on_timeout": "approve"},
                },
                {"id": "c", "tool": "mock.critical", "input": {"action": "pay"}},
                {"id": "d", "tool": "mock.agent"},
            ]
        }
    )
    assert [s.gate() is not None for s in plan.steps] == [True, True, True, False]
    assert plan.steps[1].approval is not None and plan.steps[1].approval.deadline == 300
    bad = [
        ({"tool": "mock.critical", "input": {"action": "pay"}, "requires_approval": False},
         "requires_approval", "cannot be switched off"),
        ({"tool": "mock.agent", "approval": {"deadline": -5}}, "approval.deadline", "more than zero"),
        ({"tool": "mock.agent", "approval": {"deadline": 5, "on_timeout": "escalate"}},
         "approval", "needs escalate_to"),
        ({"tool": "mock.agent", "approval": {"who": ["ann"]}}, "approval.who", "Extra inputs"),
        ({"tool": "mock.agent", "approval": {"on_timeout": "approve"}}, "approval", "needs a deadline"),
    ]  # fmt: skip
    for step, field, message in bad:
        with pytest.raises(PlanInvalid) as err:
            validate_plan({"steps": [{"id": "s", **step}]})
        [problem] = err.value.problems
        assert (problem.step, problem.field) == ("s", field) and message in problem.message


def test_locks_are_validated_and_their_references_make_dependencies() -> None:
    plan = validate_plan(
        {"steps": [
            {"id": "a", "tool": "mock.agent"},
            {"id": "b", "tool": "mock.agent", "locks": [
                {"name": "repo:${input.repo}"},
                {"name": "db:${steps.a.output.result}", "mode": "shared", "policy": "fail"}]},
        ]},
        inputs={"repo": "baton"},
    )  # fmt: skip
    locks = plan.step("b").locks
    assert [(lk.mode, lk.policy) for lk in locks] == [("exclusive", "wait"), ("shared", "fail")]
    assert plan.step("b").needs() == ["a"]


@pytest.mark.parametrize(
    ("lock", "field"),
    [
        ({"name": ""}, "locks.0.name"),
        ({"name": "  "}, "locks.0.name"),
        ({"name": "db", "mode": "sometimes"}, "locks.0.mode"),
        ({"name": "db", "policy": "maybe"}, "locks.0.policy"),
        ({"name": "db", "wait_timeout_s": -1}, "locks.0.wait_timeout_s"),
        ("db", "locks.0"),
        ({"name": "${steps.nope.output}"}, "locks.0.name"),
    ],
)
def test_a_bad_lock_spec_makes_the_plan_invalid(lock: object, field: str) -> None:
    with pytest.raises(PlanInvalid) as err:
        validate_plan({"steps": [{"id": "a", "tool": "mock.agent", "locks": [lock]}]})
    assert [(p.step, p.field) for p in err.value.problems] == [("a", field)]


def test_a_step_names_a_lock_once() -> None:
    with pytest.raises(PlanInvalid, match="lock 'db' twice"):
        validate_plan({"steps": [{"id": "a", "tool": "mock.agent",
                                  "locks": [{"name": "db"}, {"name": "db", "mode": "shared"}]}]})  # fmt: skip


def test_inputs_named_in_references_must_be_given() -> None:
    plan = {"steps": [{"id": "a", "tool": "llm.generate", "input": {"prompt": "${input.city}"}}]}
    with pytest.raises(PlanInvalid, match="input 'city' was not given"):
        validate_plan(plan, inputs={})
    validate_plan(plan, inputs={"city": "Paris"})


def test_references_keep_types_whole_and_interpolate_inside_text() -> None:
    scope = {"input": {"n": 3}, "steps": {"a": {"output": {"items": [{"t": "x"}, {"t": "y"}]}}}}
    assert resolve("${steps.a.output.items}", scope) == [{"t": "x"}, {"t": "y"}]
    assert resolve({"k": ["${steps.a.output.items[1].t}", "n=${input.n}"]}, scope) == {
        "k": ["y", "n=3"]
    }


def test_a_dotted_index_into_a_list_is_refused_with_the_bracketed_path_as_a_hint() -> None:
    scope = {"steps": {"find": {"output": {"slots": [{"start": "10:00"}], "n": {"0": 1}}}}}
    with pytest.raises(ReferenceError_) as refused:
        resolve("${steps.find.output.slots.0.start}", scope)
    assert str(refused.value) == (
        "'steps.find.output.slots.0.start': no '0' (a list: write steps.find.output.slots[0].start)"
    )
    assert resolve("${steps.find.output.slots[0].start}", scope) == "10:00"
    assert resolve("${steps.find.output.n.0}", scope) == 1  # a key "0" of a mapping still reads
    with pytest.raises(ReferenceError_) as missing:  # a bracketed index past the end: no hint
        resolve("${steps.find.output.slots[3].start}", scope)
    assert str(missing.value) == "'steps.find.output.slots[3].start': no '[3]'"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [("${input.n} > 2", True), ("${input.n} == 3", True), ("not ${input.ok}", False),
     ("${input.s} != \"go\"", True), ("${input.n} < \"x\"", False)],
)  # fmt: skip
def test_conditions(condition: str, expected: bool) -> None:
    assert evaluate_condition(condition, {"input": {"n": 3, "ok": True, "s": "stop"}}) is expected
