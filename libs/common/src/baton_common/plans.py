"""Plans: a DAG of steps as data, validated before anything runs.

A step's input may reference ``${input.<path>}`` (the execution's inputs) or
``${steps.<id>.output.<path>}`` (an earlier step's output). A whole-string reference keeps the
value's type; a reference inside a longer string is interpolated as text. A reference to a step
makes that step a dependency, so data order and run order cannot disagree.

``validate_plan`` rejects unknown tools, duplicate ids, unknown dependencies, dangling references,
cycles and inputs that break a tool's schema, naming the step and the field of each problem.

Plans come from users, so reading and checking one is linear in its size: the document within
the limits of ``baton_common.documents`` (no YAML aliases, bounded depth and size), references and
conditions matched without backtracking, the order found by Kahn's algorithm.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baton_common.agents import check_agents
from baton_common.approvals import ApprovalPolicy, PlanReview
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.documents import DocumentRefused, check_length, check_shape, load_json, load_yaml
from baton_common.planproblems import PlanInvalid, PlanProblem

# ``${ expression }``: words of anything but braces and blanks, blanks between them. Possessive,
# so no text makes the engine try a split twice (``${`` and a run of blanks was cubic).
REF = re.compile(r"\$\{\s*+([^\s{}]++(?:\s++[^\s{}]++)*+)\s*+\}")
MAX_CONDITION_CHARS = 2000
STEP_ID = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"
_PATH_TOKEN = re.compile(r"[^.\[\]]+|\[(\d+)\]")


class Retry(BaseModel):
    """How many attempts a step gets and how long to wait between them."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(3, ge=1, le=100)
    backoff_s: float = Field(0.5, ge=0, le=3600)
    max_backoff_s: float = Field(30.0, ge=0, le=86400)
    jitter: float = Field(0.2, ge=0, le=1)


class ToolCall(BaseModel):
    """A tool and its input: an alternative for a step, or its compensation."""

    model_config = ConfigDict(extra="forbid")
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)


class LockSpec(BaseModel):
    """A resource a step holds from its start to its end, across executions and replicas.

    ``name`` may use ``${...}`` values (``repo:${input.repo}``); ``policy`` says what to do when
    it is held: ``wait`` (FIFO, up to ``wait_timeout_s``) or ``fail`` at once.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    mode: Literal["exclusive", "shared"] = "exclusive"
    policy: Literal["wait", "fail"] = "wait"
    wait_timeout_s: float = Field(600.0, gt=0, le=86400)

    @field_validator("name")
    @classmethod
    def _named(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("a lock needs a name")
        return name


class Step(BaseModel):
    """One node of the plan: a tool call with its dependencies and policies."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=STEP_ID)
    tool: str
    input: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    retry: Retry = Field(default_factory=Retry)
    timeout: float = Field(60.0, gt=0, le=86400)
    alternatives: list[ToolCall] = Field(default_factory=list)
    compensate: ToolCall | None = None
    requires_approval: bool = False
    approval: ApprovalPolicy | None = None
    locks: list[LockSpec] = Field(default_factory=list)
    when: str | None = Field(None, max_length=MAX_CONDITION_CHARS)
    description: str | None = None

    def references(self) -> set[str]:
        """Ids of the steps this step's input, alternatives, compensation and condition read."""
        found: set[str] = set()
        for expr in _expressions(
            [
                self.input,
                [a.input for a in self.alternatives],
                self.compensate.input if self.compensate else {},
                self.when,
                [lock.name for lock in self.locks],
            ]
        ):
            parts = expr.split(".")
            if parts[0] == "steps" and len(parts) >= 2:
                found.add(parts[1])
        return found

    def needs(self) -> list[str]:
        """Declared and referenced dependencies, in a stable order."""
        return sorted(set(self.depends_on) | self.references())

    def gate(self, catalogue: Catalogue = DEFAULT_CATALOGUE) -> str | None:
        """Why this step waits for a person before its tool runs, or None."""
        spec = catalogue.get(self.tool)
        if spec is not None and spec.side_effect == "critical":
            return f"{self.tool} is a critical tool"
        if self.requires_approval or self.approval is not None:
            return "the plan asks for approval"
        return None


class Plan(BaseModel):
    """A validated DAG of steps."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    name: str | None = None
    description: str | None = None
    steps: list[Step] = Field(min_length=1, max_length=1000)
    outputs: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int = Field(16, ge=1, le=1000)
    approval: PlanReview | None = Field(
        None, description="{plan: true, …}: a person approves or edits the plan before it runs"
    )

    def review(self, asked: bool = False) -> PlanReview | None:
        """The plan's review policy, if it (or the request, ``asked``) wants one."""
        if self.approval is not None and self.approval.plan:
            return self.approval
        return PlanReview() if asked else None

    @field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: list[Step]) -> list[Step]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return steps

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def order(self) -> list[str]:
        """Step ids in a topological order: round by round (a step comes in the first round
        after all it needs), each round in plan order."""
        done = topological_order({s.id: s.needs() for s in self.steps})
        if len(done) < len(self.steps):
            raise PlanInvalid([PlanProblem(None, "depends_on", "the plan has a cycle")])
        return done


def topological_order(needs: Mapping[str, Collection[str]]) -> list[str]:
    """Kahn's algorithm, a round at a time so each round keeps the mapping's order; O(V + E)
    but for sorting the rounds. Nodes on a cycle (or needing an unknown node) are left out."""
    position = {node: i for i, node in enumerate(needs)}
    waiting = {node: len(set(deps)) for node, deps in needs.items()}
    dependents: dict[str, list[str]] = {node: [] for node in needs}
    for node, deps in needs.items():
        for dep in set(deps):
            if dep in dependents:
                dependents[dep].append(node)
    done: list[str] = []
    layer = [node for node, count in waiting.items() if count == 0]
    while layer:
        done += layer
        ready = []
        for node in layer:
            for later in dependents[node]:
                waiting[later] -= 1
                if waiting[later] == 0:
                    ready.append(later)
        layer = sorted(ready, key=position.__getitem__)
    return done


def parse_plan_text(text: str) -> dict[str, Any]:
    """A plan document in JSON or YAML to a dict (clear error otherwise), within the limits of
    ``baton_common.documents``."""
    try:
        check_length(text, "the plan")
        data = _json_or_yaml(text)
    except DocumentRefused as exc:
        raise PlanInvalid([PlanProblem(None, "<document>", str(exc))]) from None
    except yaml.YAMLError as exc:
        raise PlanInvalid(
            [PlanProblem(None, "<document>", f"neither JSON nor YAML: {exc}")]
        ) from None
    if not isinstance(data, dict):
        raise PlanInvalid([PlanProblem(None, "<document>", "a plan is a mapping with 'steps'")])
    return data


def read_plan(
    given: Any, inputs: Mapping[str, Any] | None = None, catalogue: Catalogue = DEFAULT_CATALOGUE
) -> tuple[dict[str, Any], Plan]:
    """A plan as a request gives it (JSON or YAML text, or a mapping): the mapping, and the plan
    once validated. CPU-heavy for a big plan: a server runs it off its event loop."""
    from baton_common.limits import check_size, limits

    raw = parse_plan_text(given) if isinstance(given, str) else given
    check_size("plan", raw, limits().plan)  # TooLarge: a 422 naming the field
    if not isinstance(raw, dict):
        raise PlanInvalid([PlanProblem(None, "<document>", "a plan is a mapping with 'steps'")])
    return raw, validate_plan(raw, catalogue, inputs)


def _json_or_yaml(text: str) -> Any:
    try:
        return load_json(text, "the plan")
    except DocumentRefused:
        raise
    except ValueError:
        return load_yaml(text, "the plan")


def validate_plan(
    data: Mapping[str, Any] | Plan,
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    inputs: Mapping[str, Any] | None = None,
) -> Plan:
    """Return the plan if it can run; raise ``PlanInvalid`` naming every problem otherwise."""
    try:
        if not isinstance(data, Plan):
            check_shape(data, "the plan")
        if inputs is not None:
            check_shape(inputs, "inputs")
    except DocumentRefused as exc:
        raise PlanInvalid([PlanProblem(None, "<document>", str(exc))]) from None
    plan = data if isinstance(data, Plan) else _parse(data)
    problems: list[PlanProblem] = []
    ids = {s.id for s in plan.steps}
    for step in plan.steps:
        problems += _check_tools(step, catalogue)
        problems += _check_dependencies(step, ids, inputs)
        problems += _check_not_yet_supported(step, catalogue)
        problems += _check_locks(step)
    if not problems:
        problems += _check_cycles(plan)
    if not problems:
        for step in plan.steps:
            problems += _check_inputs(step, catalogue)
        problems += check_agents(plan)
    problems += _check_outputs(plan, ids)
    if problems:
        raise PlanInvalid(problems)
    return plan


def _parse(data: Mapping[str, Any]) -> Plan:
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raw_steps = data.get("steps") if isinstance(data, Mapping) else None
        raise PlanInvalid([_problem(err, raw_steps) for err in exc.errors()]) from None


def _problem(err: Any, raw_steps: Any) -> PlanProblem:
    loc = list(err["loc"])
    step = None
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        try:
            step = str(raw_steps[loc[1]].get("id") or f"#{loc[1] + 1}")
        except (TypeError, IndexError, AttributeError):
            step = f"#{loc[1] + 1}"
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "steps"
    return PlanProblem(step, field, err["msg"])


def _check_not_yet_supported(step: Step, catalogue: Catalogue) -> list[PlanProblem]:
    """A critical tool always passes its gate: a plan that says otherwise is refused."""
    spec = catalogue.get(step.tool)
    critical = spec is not None and spec.side_effect == "critical"
    if critical and "requires_approval" in step.model_fields_set and not step.requires_approval:
        return [PlanProblem(step.id, "requires_approval",
                            f"{step.tool} is a critical tool: its approval gate cannot be switched off")]  # fmt: skip
    return []


def _check_locks(step: Step) -> list[PlanProblem]:
    seen: set[str] = set()
    problems = []
    for i, lock in enumerate(step.locks):
        if lock.name in seen:  # one step holds a resource once, in one mode
            problems.append(PlanProblem(step.id, f"locks.{i}.name", f"lock {lock.name!r} twice"))
        seen.add(lock.name)
    return problems


def _check_tools(step: Step, catalogue: Catalogue) -> list[PlanProblem]:
    calls = [("tool", step.tool)]
    calls += [(f"alternatives.{i}.tool", a.tool) for i, a in enumerate(step.alternatives)]
    if step.compensate:
        calls.append(("compensate.tool", step.compensate.tool))
    problems = []
    for field, name in calls:
        if name not in catalogue:
            hint = difflib.get_close_matches(name, catalogue.names(), n=1)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(PlanProblem(step.id, field, f"unknown tool {name!r}{suffix}"))
    return problems


def _check_dependencies(
    step: Step, ids: set[str], inputs: Mapping[str, Any] | None
) -> list[PlanProblem]:
    problems = [
        PlanProblem(step.id, "depends_on", f"unknown step {dep!r}")
        for dep in step.depends_on
        if dep not in ids
    ]
    if step.id in step.depends_on:
        problems.append(PlanProblem(step.id, "depends_on", "a step cannot depend on itself"))
    for field, expr in _located_expressions(step):
        problems += _check_reference(step.id, field, expr, ids, inputs)
    if step.when is not None:
        try:
            parse_condition(step.when)
        except ValueError as exc:
            problems.append(PlanProblem(step.id, "when", str(exc)))
    return problems


def _check_reference(
    step_id: str, field: str, expr: str, ids: set[str], inputs: Mapping[str, Any] | None
) -> list[PlanProblem]:
    parts = expr.split(".")
    if parts[0] == "input":
        name = parts[1].split("[")[0] if len(parts) > 1 else ""
        if inputs is not None and name and name not in inputs:
            return [PlanProblem(step_id, field, f"${{{expr}}}: input {name!r} was not given")]
        return []
    if parts[0] != "steps" or len(parts) < 3 or parts[2] != "output":
        return [
            PlanProblem(
                step_id, field, f"${{{expr}}}: expected ${{input.…}} or ${{steps.<id>.output…}}"
            )
        ]
    if parts[1] not in ids:
        return [PlanProblem(step_id, field, f"${{{expr}}} refers to unknown step {parts[1]!r}")]
    if parts[1] == step_id:
        return [PlanProblem(step_id, field, f"${{{expr}}}: a step cannot read its own output")]
    return []


def _check_cycles(plan: Plan) -> list[PlanProblem]:
    needs = {s.id: s.needs() for s in plan.steps}
    ordered = set(topological_order(needs))
    if len(ordered) == len(needs):
        return []
    left = {
        n: [d for d in deps if d not in ordered] for n, deps in needs.items() if n not in ordered
    }
    cycle = _a_cycle(left)
    return [PlanProblem(cycle[0], "depends_on", "cycle: " + " -> ".join(reversed(cycle)))]


def _a_cycle(left: dict[str, list[str]]) -> list[str]:
    """A cycle among the steps Kahn's algorithm left: each of them needs another of them (their
    needs are known steps, checked first), so following needs must come back to one."""
    path: list[str] = []
    at: dict[str, int] = {}
    node = next(iter(left))
    while node not in at:
        at[node] = len(path)
        path.append(node)
        if not left[node]:  # unreachable when the needs were checked; never an IndexError
            return path
        node = left[node][0]
    return [*path[at[node] :], node]


def _check_inputs(step: Step, catalogue: Catalogue) -> list[PlanProblem]:
    calls = [("input", step.tool, step.input)]
    calls += [(f"alternatives.{i}.input", a.tool, a.input) for i, a in enumerate(step.alternatives)]
    if step.compensate:
        calls.append(("compensate.input", step.compensate.tool, step.compensate.input))
    problems = []
    for field, tool, value in calls:
        spec = catalogue.get(tool)
        if spec is None:
            continue
        for error in spec.input_validator().iter_errors(value):
            if _holds_reference(error.instance):
                continue  # resolved at run time; checked again then
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(
                PlanProblem(step.id, f"{field}.{path}" if path else field, error.message)
            )
    return problems


def _check_outputs(plan: Plan, ids: set[str]) -> list[PlanProblem]:
    problems = []
    for expr in _expressions(plan.outputs):
        parts = expr.split(".")
        if parts[0] == "steps" and (len(parts) < 3 or parts[1] not in ids):
            problems.append(PlanProblem(None, "outputs", f"${{{expr}}} refers to an unknown step"))
    return problems


def _holds_reference(value: Any) -> bool:
    return any(True for _ in _expressions(value))


def _expressions(value: Any) -> Iterator[str]:
    """Every ``${…}`` in ``value``'s strings, depth first. Collected in one walk rather than
    through nested generators, with the plain types tried before the ``Mapping`` ABC: the walk
    was half of a plan's validation (issue 32, the gateway's submit path)."""
    found: list[str] = []
    _collect_expressions(value, found)
    return iter(found)


def _collect_expressions(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        if "${" in value:  # REF needs it: most strings hold none
            found += REF.findall(value)
    elif isinstance(value, dict) or (
        not isinstance(value, list | tuple) and isinstance(value, Mapping)
    ):
        for v in value.values():
            _collect_expressions(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_expressions(v, found)


def _located_expressions(step: Step) -> Iterator[tuple[str, str]]:
    for expr in _expressions(step.input):
        yield "input", expr
    for i, alt in enumerate(step.alternatives):
        for expr in _expressions(alt.input):
            yield f"alternatives.{i}.input", expr
    if step.compensate:
        for expr in _expressions(step.compensate.input):
            yield "compensate.input", expr
    if step.when:
        for expr in _expressions(step.when):
            yield "when", expr
    for i, lock in enumerate(step.locks):
        for expr in _expressions(lock.name):
            yield f"locks.{i}.name", expr


# --- resolving references at run time -------------------------------------------------------------


class ReferenceError_(LookupError):
    """A reference points at nothing in the data available at run time."""


def lookup(root: Any, path: str) -> Any:
    """``a.b[0].c`` in nested dicts and lists."""
    value = root
    for token in _PATH_TOKEN.finditer(path):
        index, key = token.group(1), token.group(0)
        try:
            value = value[int(index)] if index is not None else value[key]
        except (KeyError, IndexError, TypeError):
            hint = _index_hint(path, token) if isinstance(value, list) else ""
            raise ReferenceError_(f"{path!r}: no {key!r}{hint}") from None
    return value


def _index_hint(path: str, token: re.Match[str]) -> str:
    """``slots.0.start`` reads a key ``0`` of a list: say how to write an index instead."""
    if token.group(1) is not None or not token.group(0).isdigit():
        return ""
    start, end = token.span()
    before = path[: start - 1] if start and path[start - 1] == "." else path[:start]
    return f" (a list: write {before}[{token.group(0)}]{path[end:]})"


def resolve(value: Any, scope: Mapping[str, Any]) -> Any:
    """Replace every reference in ``value`` with data from ``scope`` (``input``, ``steps``)."""
    if isinstance(value, str):
        whole = REF.fullmatch(value.strip())
        if whole:
            return lookup(scope, whole.group(1))
        return REF.sub(lambda m: _text(lookup(scope, m.group(1))), value)
    if isinstance(value, Mapping):
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, scope) for v in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# The first operator after the first character splits a comparison: one linear search (a
# pattern with a lazy left side and blanks around the operator backtracked quadratically).
_OPERATOR = re.compile(r"==|!=|>=|<=|>|<")


def parse_condition(text: str) -> tuple[bool, str, str | None, str | None]:
    """``[not] <value> [op <value>]``; a value is a reference or a JSON literal."""
    if len(text) > MAX_CONDITION_CHARS:
        raise ValueError(f"a condition is at most {MAX_CONDITION_CHARS} characters")
    body = text.strip()
    negate = body.startswith("not ")
    if negate:
        body = body[4:].strip()
    match = _OPERATOR.search(body, 1)
    left, op, right = body, None, None
    if match and body[match.end() :].strip():
        left, op, right = body[: match.start()].rstrip(), match[0], body[match.end() :].lstrip()
    for side in (left, right):
        if side is not None and not REF.fullmatch(side.strip()):
            try:
                json.loads(side)
            except ValueError:
                raise ValueError(
                    f"cannot read {side.strip()!r}: use ${{…}} or a JSON literal"
                ) from None
    return negate, left, op, right


def evaluate_condition(text: str, scope: Mapping[str, Any]) -> bool:
    negate, left, op, right = parse_condition(text)

    def value(side: str) -> Any:
        side = side.strip()
        return resolve(side, scope) if REF.fullmatch(side) else json.loads(side)

    if op is None:
        result = bool(value(left))
    else:
        a, b = value(left), value(str(right))
        ops = {"==": a == b, "!=": a != b}
        if op in ops:
            result = ops[op]
        else:
            try:
                result = {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
            except TypeError:
                result = False
    return not result if negate else result
