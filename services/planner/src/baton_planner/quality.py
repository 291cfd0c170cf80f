"""The planner quality suite: requests with the facts a right plan has (tools, parallelism,
order, outputs, conditions, approvals, refusals, and, where a case names them, key inputs of
its steps: ``step_inputs``), checked against any planner.

The tables live in ``bench/``: the tuned part (``planner_suite*.yaml``, the planner may be shaped
on it) and the held-out part (``planner_heldout*.yaml``, only scored). A table may add agent-file
tools to the catalogue (``agents: <folder>``). The unit test and ``make bench`` both run them
through ``run_suite`` so the figure in the docs is the figure the test asserts.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec
from baton_common.plans import Plan, PlanInvalid, validate_plan

from baton_planner.planners import Planner, PlanningError


@dataclass
class CaseResult:
    """One request's verdict: the problems found (none: passed) and whether its plan validated."""

    request: str
    problems: list[str] = field(default_factory=list)
    valid: bool = True  # a refusal counts as valid: no plan was offered

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class SuiteResult:
    cases: list[CaseResult]

    @property
    def pass_rate(self) -> float:
        return sum(c.passed for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def line(self, name: str) -> str:
        passed = sum(c.passed for c in self.cases)
        return (
            f"planner {name}: {passed}/{len(self.cases)} requests planned right "
            f"({_percent(passed, len(self.cases))}); every plan validates: "
            f"{'yes' if all(c.valid for c in self.cases) else 'NO'}"
        )


def _percent(part: int, whole: int) -> str:
    """ "50%", "99.7%": a whole percent when exact, else one decimal (649/651 is not 100%)."""
    share = 100 * part / whole if whole else 0.0
    return f"{share:.0f}%" if share == int(share) else f"{share:.1f}%"


def load_suite(path: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load(path.read_text())["cases"])


@dataclass
class SuitePart:
    """One table of the suite and the catalogue its requests are planned with."""

    path: Path
    cases: list[dict[str, Any]]
    catalogue: Catalogue


def load_part(path: Path) -> SuitePart:
    """A table; with ``agents: <folder>`` (beside the table) the built-in tools plus that
    folder's agent files, read as the engine reads them; with ``mcp_tools: <file>`` also the
    MCP tools that file lists (catalogue specs, as the executor makes them of a server's list)."""
    from baton_common.catalogue import DEPLOYED_TOOLS

    data = yaml.safe_load(path.read_text())
    extra = [*_agent_specs(path, data.get("agents")), *_mcp_specs(path, data.get("mcp_tools"))]
    catalogue = Catalogue((*DEPLOYED_TOOLS, *extra)) if extra else DEFAULT_CATALOGUE
    return SuitePart(path, list(data["cases"]), catalogue)


def _agent_specs(table: Path, folder: str | None) -> list[ToolSpec]:
    from baton_common.agentfiles import scan_agents

    if not folder:
        return []
    good, broken = scan_agents(table.parent / folder)
    if broken:
        raise ValueError(f"{table.name}: broken agent files: {broken}")
    return [agent.spec() for _, agent in good]


def _mcp_specs(table: Path, listing: str | None) -> list[ToolSpec]:
    if not listing:
        return []
    tools = yaml.safe_load((table.parent / listing).read_text())["tools"]
    return [ToolSpec.model_validate(tool) for tool in tools]


async def measure_parts(planner: Planner, parts: list[SuitePart]) -> tuple[SuiteResult, float]:
    """The parts' cases as one result (each planned with its part's catalogue), and the median
    seconds per request. A planner with a ``catalogue`` plans with each part's catalogue."""
    results: list[CaseResult] = []
    times: list[float] = []
    for part in parts:
        own = planner
        if getattr(planner, "catalogue", part.catalogue) is not part.catalogue:
            own = copy.copy(planner)
            own.catalogue = part.catalogue  # type: ignore[attr-defined]
        result, median = await measure(own, part.cases, part.catalogue)
        results += result.cases
        times += [median] * len(result.cases)
    return SuiteResult(results), statistics.median(times) if times else 0.0


def planners_from_env(env: dict[str, str] | None = None) -> tuple[list[Planner], str | None]:
    """The planners to measure: offline always, the configured model's (BATON_LLM_MODEL with
    an OpenAI-compatible server, or a Gemini key: the same settings the service uses); and why
    no model is measured, when none is."""
    from baton_planner.offline import OfflinePlanner
    from baton_planner.selection import model_planner

    model = model_planner(env=env)
    if model is None:
        return [
            OfflinePlanner()
        ], "set BATON_LLM_MODEL (with OPENAI_BASE_URL) or GEMINI_API_KEY to measure it"
    return [OfflinePlanner(), model], None


async def measure(
    planner: Planner, cases: list[dict[str, Any]], catalogue: Catalogue = DEFAULT_CATALOGUE
) -> tuple[SuiteResult, float]:
    """The suite's result and the median seconds per request."""
    results, times = [], []
    for case in cases:
        started = time.perf_counter()
        results.append(await run_case(planner, case, catalogue))
        times.append(time.perf_counter() - started)
    return SuiteResult(results), statistics.median(times) if times else 0.0


async def run_suite(
    planner: Planner, cases: list[dict[str, Any]], catalogue: Catalogue = DEFAULT_CATALOGUE
) -> SuiteResult:
    return SuiteResult([await run_case(planner, case, catalogue) for case in cases])


async def run_case(planner: Planner, case: dict[str, Any], catalogue: Catalogue) -> CaseResult:
    result = CaseResult(case["request"])
    inputs = dict(case.get("inputs") or {})
    try:
        data = await planner.plan(case["request"], inputs)
    except PlanningError as exc:
        if not case.get("refused"):
            result.problems.append(f"refused: {exc}")
        return result
    if case.get("refused"):
        result.problems.append("planned, but the request should have been refused")
    try:
        plan = validate_plan(data, catalogue, inputs)
    except PlanInvalid as exc:
        result.valid = False
        result.problems.append(f"invalid plan: {exc}")
        return result
    result.problems += check(plan, case, catalogue)
    return result


def check(plan: Plan, case: dict[str, Any], catalogue: Catalogue = DEFAULT_CATALOGUE) -> list[str]:
    """What the plan gets wrong against the case's expectations."""
    problems = []
    tools = Counter(s.tool for s in plan.steps)
    if "tools" in case and tools != Counter(case["tools"]):
        problems.append(f"tools {sorted(tools.elements())}, expected {sorted(case['tools'])}")
    if "parallel" in case and width(plan) != case["parallel"]:
        problems.append(f"{width(plan)} steps at once, expected {case['parallel']}")
    for pair in case.get("after", []):
        first, then = (p.strip() for p in pair.split("->"))
        if not _runs_after(plan, first, then):
            problems.append(f"no {then} step runs after a {first} step")
    in_outputs = {s.tool for s in plan.steps if _in_outputs(plan, s.id)}
    for tool in case.get("outputs", []):
        if tool not in in_outputs:
            problems.append(f"no {tool} step among the outputs")
    if case.get("when") and not any(s.when for s in plan.steps):
        problems.append("no step has a condition")
    if case.get("approval") and not any(s.gate(catalogue) for s in plan.steps):
        problems.append("no step waits for approval")
    for tool, wanted in (case.get("step_inputs") or {}).items():
        problems += _input_problems(plan, tool, wanted if isinstance(wanted, list) else [wanted])
    return problems


def _input_problems(plan: Plan, tool: str, wanted: list[dict[str, Any]]) -> list[str]:
    """``step_inputs``: each expected mapping is met by some step of the tool (a different step
    for each), every key's value the same as the step's input, case and surrounding blanks
    aside; a list is compared as a set; a number as a number."""
    inputs = [s.input for s in plan.steps if s.tool == tool]
    problems = []
    for expected in wanted:
        match = next(
            (i for i in inputs if all(_same(i.get(k), v) for k, v in expected.items())), None
        )
        if match is None:
            seen = [{k: i.get(k) for k in expected} for i in inputs]
            problems.append(f"no {tool} step has input {expected} (the plan's: {seen})")
        else:
            inputs.remove(match)
    return problems


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, list):
        return isinstance(actual, list) and {_norm(a) for a in actual} == {
            _norm(e) for e in expected
        }
    return _norm(actual) == _norm(expected)


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower()
    try:
        return float(text)
    except ValueError:
        return text


def width(plan: Plan) -> int:
    """The most steps that can run at once: the largest level of the graph (by longest path)."""
    level: dict[str, int] = {}
    for step_id in plan.order():
        needs = plan.step(step_id).needs()
        level[step_id] = 1 + max((level[d] for d in needs), default=-1)
    return max(Counter(level.values()).values())


def _runs_after(plan: Plan, first: str, then: str) -> bool:
    before = {s.id: set(s.needs()) for s in plan.steps}

    def ancestors(step_id: str) -> set[str]:
        found: set[str] = set()
        todo = list(before[step_id])
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo += before[current]
        return found

    tool = {s.id: s.tool for s in plan.steps}
    return any(any(tool[a] == first for a in ancestors(s.id)) for s in plan.steps if s.tool == then)


def _in_outputs(plan: Plan, step_id: str) -> bool:
    return f"steps.{step_id}." in str(plan.outputs) or f"steps.{step_id}}}" in str(plan.outputs)
