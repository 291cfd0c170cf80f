"""Reading and checking a plan is linear in its size: no input burns the CPU."""

from __future__ import annotations

import time

import pytest
from baton_common.documents import MAX_DEPTH
from baton_common.plans import (
    MAX_CONDITION_CHARS,
    REF,
    PlanInvalid,
    evaluate_condition,
    parse_condition,
    parse_plan_text,
    topological_order,
    validate_plan,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def rounds(needs: dict[str, list[str]]) -> list[str]:
    """The order as it was defined before Kahn's algorithm: every step whose needs are all
    done, in plan order, round after round (cubic, so only for small graphs)."""
    done: list[str] = []
    while len(done) < len(needs):
        ready = [i for i in needs if i not in done and set(needs[i]) <= set(done)]
        if not ready:
            break
        done.extend(ready)
    return done


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """Steps in a shuffled plan order, each needing some of the steps made before it."""
    n = draw(st.integers(1, 10))
    made = [f"s{i}" for i in range(n)]
    needs = {
        sid: draw(st.lists(st.sampled_from(made[:i]), max_size=3, unique=True)) if i else []
        for i, sid in enumerate(made)
    }
    order = draw(st.permutations(made))
    return {sid: needs[sid] for sid in order}


@settings(max_examples=100, deadline=None)
@given(dags())
def test_kahn_gives_the_same_order_as_before(needs: dict[str, list[str]]) -> None:
    assert topological_order(needs) == rounds(needs)


def test_a_round_keeps_plan_order_whatever_freed_it() -> None:
    needs = {"a": [], "b": [], "c": ["b"], "d": ["a"]}
    assert topological_order(needs) == ["a", "b", "c", "d"]  # not a, b, d, c (queue order)


def test_a_long_chain_is_ordered_in_linear_time() -> None:
    n = 5000
    needs = {f"s{i}": [f"s{i - 1}"] if i else [] for i in reversed(range(n))}
    started = time.perf_counter()
    assert topological_order(needs) == [f"s{i}" for i in range(n)]
    assert time.perf_counter() - started < 1.0  # the round-by-round scan was cubic: hours


def test_the_longest_plan_validates_and_orders() -> None:
    steps = [
        {"id": f"s{i}", "tool": "mock.agent", **({"depends_on": [f"s{i - 1}"]} if i else {})}
        for i in range(1000)
    ]
    plan = validate_plan({"steps": list(reversed(steps))})  # a deep chain: no recursion either
    assert plan.order() == [f"s{i}" for i in range(1000)]


def test_a_cycle_is_named_with_its_steps() -> None:
    steps = [
        {"id": "start", "tool": "mock.agent"},
        {"id": "a", "tool": "mock.agent", "depends_on": ["start", "c"]},
        {"id": "b", "tool": "mock.agent", "depends_on": ["a"]},
        {"id": "c", "tool": "mock.agent", "depends_on": ["b"]},
        {"id": "after", "tool": "mock.agent", "depends_on": ["c"]},
    ]
    with pytest.raises(PlanInvalid) as err:
        validate_plan({"steps": steps})
    (problem,) = err.value.problems
    assert (problem.step, problem.field) == ("a", "depends_on")
    assert problem.message == "cycle: a -> b -> c -> a"


def test_an_alias_bomb_plan_is_refused_as_a_document() -> None:
    lines = ["steps:", "- id: s", "  tool: text.template", "  input:", "    template: x"]
    lines += ["    values:", "      a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    started = time.perf_counter()
    with pytest.raises(PlanInvalid) as err:
        parse_plan_text("\n".join(lines))
    assert time.perf_counter() - started < 1.0
    (problem,) = err.value.problems
    assert problem.field == "<document>"
    assert "aliases (*a0) are not accepted" in problem.message


def _deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"x": value}
    return value


def test_deep_plans_and_inputs_are_refused() -> None:
    step = {"id": "s", "tool": "mock.agent", "input": {"prompt": "hi", "extra": _deep(MAX_DEPTH)}}
    with pytest.raises(PlanInvalid, match="the plan: nested more than"):
        validate_plan({"steps": [step]})
    with pytest.raises(PlanInvalid, match="inputs: nested more than"):
        validate_plan({"steps": [{"id": "s", "tool": "mock.agent"}]}, inputs=_deep(MAX_DEPTH))
    with pytest.raises(PlanInvalid, match="nested more than"):
        parse_plan_text('{"steps": ' + "[" * 50_000 + "]" * 50_000 + "}")


def test_references_match_as_before() -> None:
    assert REF.findall("${ steps.a.output.x } and ${input.b[0]}") == [
        "steps.a.output.x",
        "input.b[0]",
    ]
    assert REF.fullmatch("${  input.a  }")[1] == "input.a"  # type: ignore[index]
    assert REF.findall("${input.a b}") == ["input.a b"]
    assert REF.findall("${ ${input.a}") == ["input.a"]  # an open brace starts anew
    assert REF.findall("$ {input.a} ${} {input.b}") == []


@pytest.mark.parametrize(
    "text",
    ["${" + " " * 20_000, "${ a" * 5_000, "${" * 10_000, "${a " + " " * 20_000 + "b"],
)
def test_pathological_text_around_references_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    REF.findall(text)
    validate_plan({"steps": [{"id": "s", "tool": "mock.agent", "input": {"task": text}}]})
    assert time.perf_counter() - started < 1.0  # "${" and 2,000 blanks took 8 s before


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("${steps.a.output.n} > 3", (False, "${steps.a.output.n}", ">", "3")),
        ("not ${input.x}", (True, "${input.x}", None, None)),
        ("${input.a}>=${input.b}", (False, "${input.a}", ">=", "${input.b}")),
        ('"a" != "b"', (False, '"a"', "!=", '"b"')),
        ("${input.x} == null", (False, "${input.x}", "==", "null")),
        ("true", (False, "true", None, None)),
    ],
)
def test_conditions_parse_as_before(text: str, parsed: tuple) -> None:
    assert parse_condition(text) == parsed


def test_condition_evaluation_is_unchanged() -> None:
    scope = {"input": {"a": 5, "b": 7, "s": "x"}}
    assert evaluate_condition("${input.a} < ${input.b}", scope)
    assert not evaluate_condition("${input.a} >= 6", scope)
    assert evaluate_condition('${input.s} == "x"', scope)
    assert evaluate_condition("not ${input.missing_is_false}", {"input": {"missing_is_false": 0}})


def test_a_pathological_condition_is_refused_or_read_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match="at most 2000 characters"):
        parse_condition("1" + " " * 100_000 + "2")  # the old pattern: quadratic, 50 s
    with pytest.raises(ValueError, match="cannot read"):
        parse_condition("1" + " " * (MAX_CONDITION_CHARS - 2) + "2")
    assert time.perf_counter() - started < 1.0
    step = {"id": "s", "tool": "mock.agent", "when": "1" + " " * MAX_CONDITION_CHARS}
    with pytest.raises(PlanInvalid) as err:
        validate_plan({"steps": [step]})
    assert err.value.problems[0].field == "when"
