"""Plans: a DAG of steps as data, validated before anything runs.

A step's input may reference ``${input.<path>}`` (the execution's inputs) or
``${steps.<id>.output.<path>}`` (an earlier step's output). A whole-string reference keeps the
value's type; a reference inside a longer string is interpolated as text. A reference to a step
makes that step a dependency, so data order and run order cannot disagree.

``validate_plan`` rejects unknown tools, duplicate ids, unknown dependencies, dangling references,
cycles and inputs that break a tool's schema, naming the step and the field of each problem.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baton_common.agents import check_agents
from baton_common.approvals import ApprovalPolicy, PlanReview
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue

# ``${ expression }``: the expression trimmed. Written so that no part can match what another
# does (the expression starts and ends with a character that is no space, and never holds
# ``}`` or another ``${``): the lazy ``${\s*([^}]+?)\s*}`` took 20 s over ``${`` and 2,000 spaces.
_CHAR = r"(?:[^}$]|\$(?!\{))"
_SOLID = r"(?:[^}$\s]|\$(?!\{))"
REF = re.compile(rf"\$\{{\s*({_SOLID}(?:{_CHAR}*{_SOLID})?)\s*\}}")
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
    when: str | None = None
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
        """Step ids in a topological order (stable: plan order among ready steps), in waves:
        each wave is every step whose needs the earlier waves met. Linear in the plan's edges
        (a 1,000-step chain is a thousand waves: rescanning the plan per wave took seconds)."""
        place = {s.id: i for i, s in enumerate(self.steps)}
        waiting = {s.id: len(set(s.needs())) for s in self.steps}
        dependents: dict[str, list[str]] = {}
        for s in self.steps:
            for need in set(s.needs()):
                dependents.setdefault(need, []).append(s.id)
        wave = [i for i, n in waiting.items() if n == 0]
        done: list[str] = []
        while wave:
            done.extend(wave)
            freed = []
            for finished in wave:
                for follower in dependents.get(finished, []):
                    waiting[follower] -= 1
                    if waiting[follower] == 0:
                        freed.append(follower)
            wave = sorted(freed, key=place.__getitem__)
        if len(done) < len(place):
            raise PlanInvalid([PlanProblem(None, "depends_on", "the plan has a cycle")])
        return done


class PlanProblem(BaseModel):
    """One reason a plan is rejected: which step, which field, what is wrong."""

    step: str | None
    field: str
    message: str

    def __init__(self, step: str | None, field: str, message: str) -> None:
        super().__init__(step=step, field=field, message=message)

    def __str__(self) -> str:
        where = f"step {self.step!r}" if self.step else "plan"
        return f"{where}, {self.field}: {self.message}"


class PlanInvalid(ValueError):
    """The plan cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[PlanProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def parse_plan_text(text: str) -> dict[str, Any]:
    """A plan document in JSON or YAML to a dict (clear error otherwise)."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlanInvalid(
                [PlanProblem(None, "<document>", f"neither JSON nor YAML: {exc}")]
            ) from None
    if not isinstance(data, dict):
        raise PlanInvalid([PlanProblem(None, "<document>", "a plan is a mapping with 'steps'")])
    return data


def validate_plan(
    data: Mapping[str, Any] | Plan,
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    inputs: Mapping[str, Any] | None = None,
) -> Plan:
    """Return the plan if it can run; raise ``PlanInvalid`` naming every problem otherwise."""
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
    state: dict[str, int] = {}
    for step in plan.steps:
        if step.id not in state and (cycle := _cycle_from(step.id, needs, state)):
            return [PlanProblem(cycle[0], "depends_on", "cycle: " + " -> ".join(reversed(cycle)))]
    return []


def _cycle_from(
    root: str, needs: Mapping[str, list[str]], state: dict[str, int]
) -> list[str] | None:
    """A depth-first walk of the needs from ``root`` (1: on the path, 2: done); the path of the
    first cycle met. A loop with its own stack, not recursion: a 1,000-step chain is deeper
    than Python's recursion limit."""
    path = [root]
    stack = [iter(needs.get(root, []))]
    state[root] = 1
    while stack:
        for dep in stack[-1]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(needs.get(dep, [])))
                break
        else:
            state[path.pop()] = 2
            stack.pop()
    return None


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
    if isinstance(value, str):
        yield from REF.findall(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _expressions(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _expressions(v)


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
            raise ReferenceError_(f"{path!r}: no {key!r}") from None
    return value


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


_COMPARISON = re.compile(r"^(?P<left>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<right>.+)$")


def parse_condition(text: str) -> tuple[bool, str, str | None, str | None]:
    """``[not] <value> [op <value>]``; a value is a reference or a JSON literal."""
    body = text.strip()
    negate = body.startswith("not ")
    if negate:
        body = body[4:].strip()
    match = _COMPARISON.match(body)
    left, op, right = (match["left"], match["op"], match["right"]) if match else (body, None, None)
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
