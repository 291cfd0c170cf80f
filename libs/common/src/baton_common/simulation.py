"""Simulated executions: dry runs, mock profiles and replays of recorded executions.

A simulated execution runs the real engine path (executor, workers, events, views) with one rule:
it never has a side effect. Which calls run for real and what the others answer is decided here,
from data every service shares: the request's ``Simulation`` and each tool's declared dry-run
behaviour in the catalogue. The executor puts the decision on each dispatched task
(``StepDispatched.simulated``) and the workers carry it out, so the history says exactly what was
simulated and how.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec
from baton_common.documents import DocumentRefused, check_shape, load_yaml
from baton_common.plans import ReferenceError_, resolve

Mode = Literal["dry_run", "mock", "replay"]


class SimulationInvalid(ValueError):
    """A mock profile or simulation request that cannot be used; the message says why."""


# --- mock profiles -----------------------------------------------------------------------------


class Latency(BaseModel):
    """How long a mocked call takes: a distribution in milliseconds, clamped to [min, max]."""

    model_config = ConfigDict(extra="forbid")
    distribution: Literal["fixed", "uniform", "normal", "exponential"] = "fixed"
    mean_ms: float = Field(0.0, ge=0, le=600_000)
    stddev_ms: float = Field(0.0, ge=0, le=600_000)
    min_ms: float = Field(0.0, ge=0, le=600_000)
    max_ms: float = Field(600_000.0, ge=0, le=600_000)

    def sample(self, rng: random.Random) -> float:
        if self.distribution == "uniform":
            value = rng.uniform(self.min_ms, min(self.max_ms, max(self.min_ms, self.mean_ms * 2)))
        elif self.distribution == "normal":
            value = rng.gauss(self.mean_ms, self.stddev_ms)
        elif self.distribution == "exponential":
            value = rng.expovariate(1 / self.mean_ms) if self.mean_ms > 0 else 0.0
        else:
            value = self.mean_ms
        return max(self.min_ms, min(self.max_ms, value))


class MockBehaviour(BaseModel):
    """What a mocked tool (or step) does instead of its real call."""

    model_config = ConfigDict(extra="forbid")
    latency: Latency = Field(default_factory=Latency)
    failure_rate: float = Field(0.0, ge=0, le=1)
    fail_first: int = Field(0, ge=0, le=100, description="attempts that fail before any succeeds")
    error: str = "mock failure"
    retryable: bool = True
    output: Any = None  # None: the tool's declared dry-run output

    @model_validator(mode="before")
    @classmethod
    def _latency_shorthand(cls, data: Any) -> Any:
        """``latency_ms: 120`` is a fixed latency; ``latency: {...}`` a distribution."""
        if isinstance(data, dict) and "latency_ms" in data:
            data = dict(data)
            data["latency"] = {"mean_ms": data.pop("latency_ms")}
        return data


class MockProfile(BaseModel):
    """``baton run --mock profile.yaml``: tools (or single steps) replaced by mocks.

    Tools the profile does not name behave as in a dry run: reads run, writes are simulated.
    """

    model_config = ConfigDict(extra="forbid")
    seed: int | str | None = None  # same seed, same latencies and failures; None: per execution
    tools: dict[str, MockBehaviour] = Field(default_factory=dict)
    steps: dict[str, MockBehaviour] = Field(default_factory=dict)

    def check(
        self, catalogue: Catalogue = DEFAULT_CATALOGUE, step_ids: set[str] | None = None
    ) -> None:
        unknown = sorted(t for t in self.tools if t not in catalogue)
        if unknown:
            raise SimulationInvalid(
                f"the mock profile names unknown tool(s) {', '.join(map(repr, unknown))}; "
                f"known tools: {', '.join(catalogue.names())}"
            )
        if step_ids is not None and (missing := sorted(set(self.steps) - step_ids)):
            raise SimulationInvalid(
                f"the mock profile names step(s) {', '.join(map(repr, missing))} "
                "that the plan does not have"
            )

    def behaviour(self, step_id: str, tool: str) -> MockBehaviour | None:
        return self.steps.get(step_id) or self.tools.get(tool)


def parse_profile(raw: dict[str, Any] | str) -> MockProfile:
    """A profile from YAML/JSON text or a mapping, with a clear error for a bad one."""
    if isinstance(raw, str):
        try:
            raw = load_yaml(raw, "the mock profile")
        except DocumentRefused as exc:
            raise SimulationInvalid(str(exc)) from None
        except yaml.YAMLError as exc:
            raise SimulationInvalid(f"the mock profile is not valid YAML: {exc}") from None
    try:
        check_shape(raw, "the mock profile")
    except DocumentRefused as exc:
        raise SimulationInvalid(str(exc)) from None
    if not isinstance(raw, dict):
        raise SimulationInvalid("the mock profile must be a mapping with 'tools' and/or 'steps'")
    try:
        return MockProfile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SimulationInvalid(f"mock profile: {where}: {first['msg']}") from None


# --- recordings (replay) -----------------------------------------------------------------------


class RecordedResult(BaseModel):
    """One attempt's recorded outcome."""

    attempt: int
    ok: bool
    output: Any = None
    error: str | None = None
    retryable: bool = True


class Recording(BaseModel):
    """Every recorded attempt of one call: a step (or its compensation) with one tool and input."""

    step_id: str
    kind: str = "run"
    tool: str
    input: dict[str, Any]
    results: list[RecordedResult] = Field(default_factory=list)

    def result_for(self, attempt: int) -> RecordedResult | None:
        same = [r for r in self.results if r.attempt == attempt]
        return same[0] if same else (self.results[-1] if self.results else None)


class Simulation(BaseModel):
    """How an execution is simulated; carried from the request to ``execution.started``."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = "dry_run"
    run_reads: bool = True  # read tools run for real (False: every call is simulated)
    mock: MockProfile | None = None
    replay_of: UUID | None = None
    recordings: list[Recording] = Field(default_factory=list)

    def directive(
        self,
        catalogue: Catalogue,
        *,
        step_id: str,
        kind: str,
        tool: str,
        tool_input: dict[str, Any],
        attempt: int,
        gate: str | None,
    ) -> dict[str, Any] | None:
        """What the worker does for this call; None: the real call (a read in a dry run)."""
        spec = catalogue.get(tool)
        note: dict[str, Any] = {"mode": self.mode}
        if gate is not None:
            note["approval_skipped"] = gate  # why a person would have been asked
        if self.mode == "replay":
            return note | self._replayed(spec, step_id, kind, tool, tool_input, attempt)
        if self.mode == "mock" and self.mock is not None:
            behaviour = self.mock.behaviour(step_id, tool)
            if behaviour is not None:
                return note | {
                    "mock": behaviour.model_dump(mode="json"),
                    "seed": self.mock.seed,
                    "draw": f"{step_id}:{kind}:{attempt}",
                    "attempt": attempt,
                    "output": _default_output(spec, behaviour.output, tool_input),
                }
        if spec is not None and self.run_reads and runs_in_dry_run(spec):
            return None if gate is None else note | {"real": True}
        return note | {"output": dry_run_output(spec, tool_input)}

    def _replayed(
        self,
        spec: ToolSpec | None,
        step_id: str,
        kind: str,
        tool: str,
        tool_input: dict[str, Any],
        attempt: int,
    ) -> dict[str, Any]:
        same_step = [r for r in self.recordings if (r.step_id, r.kind) == (step_id, kind)]
        wanted = canonical(tool_input)
        for rec in same_step:
            if rec.tool == tool and canonical(rec.input) == wanted:
                result = rec.result_for(attempt)
                if result is not None:
                    return {"recorded": result.model_dump(mode="json")}
        if same_step:
            reason = "input differs from the recording"
            recorded: Any = [r.model_dump(include={"tool", "input"}) for r in same_step]
        else:
            reason, recorded = "no recording of this step", None
        return {
            "unrecorded": reason,
            "recorded_calls": recorded,
            "output": dry_run_output(spec, tool_input),
        }


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def recordings_from(history: list[Any]) -> list[Recording]:
    """The calls and results of a recorded execution, from its executor events."""
    calls: dict[tuple[str, str, str, str], Recording] = {}
    attempt_call: dict[tuple[str, str, int], Recording] = {}
    cached: list[c.StepSucceeded] = []
    for e in c.unfolded(history):  # a pure step's one event stands for its dispatch too
        if isinstance(e, c.StepDispatched):
            key = (e.step_id, e.kind, e.tool, canonical(e.input))
            rec = calls.setdefault(
                key, Recording(step_id=e.step_id, kind=e.kind, tool=e.tool, input=e.input)
            )
            attempt_call[(e.step_id, e.kind, e.attempt)] = rec
        elif isinstance(e, c.StepSucceeded | c.StepFailed):
            done = attempt_call.get((e.step_id, e.kind, e.attempt))
            if done is None:
                if isinstance(e, c.StepSucceeded) and e.cached_from:
                    cached.append(e)  # served by the result cache: no call was dispatched
                continue
            if any(r.attempt == e.attempt for r in done.results):
                continue
            ok = isinstance(e, c.StepSucceeded)
            done.results.append(
                RecordedResult(
                    attempt=e.attempt,
                    ok=ok,
                    output=e.output if isinstance(e, c.StepSucceeded) else None,
                    error=e.error if isinstance(e, c.StepFailed) else None,
                    retryable=not e.final if isinstance(e, c.StepFailed) else True,
                )
            )
    found = [r for r in calls.values() if r.results]
    return found + _cache_hits(history, cached)


def _cache_hits(history: list[Any], cached: list[c.StepSucceeded]) -> list[Recording]:
    """Steps the result cache answered, as recordings: their tool and input come from the plan,
    resolved against the recorded outputs (a cached step is a read: nobody edited its input)."""
    started = next((e for e in history if isinstance(e, c.ExecutionStarted)), None)
    if not cached or started is None:
        return []
    approved = [e.plan for e in history if isinstance(e, c.PlanApproved)]
    steps = {s["id"]: s for s in (approved[-1] if approved else started.plan).get("steps", [])}
    outputs = {
        e.step_id: {"output": e.output, "status": "succeeded"}
        for e in history
        if isinstance(e, c.StepSucceeded) and e.kind == "run"
    }
    scope = {"input": started.inputs, "steps": outputs}
    found = []
    for e in cached:
        step = steps.get(e.step_id)
        try:
            tool_input = resolve(step.get("input", {}), scope) if step else None
        except ReferenceError_:
            tool_input = None
        if step is not None and isinstance(tool_input, dict):
            result = RecordedResult(attempt=e.attempt, ok=True, output=e.output)
            found.append(
                Recording(step_id=e.step_id, tool=step["tool"], input=tool_input, results=[result])
            )
    return found


# --- dry-run outputs ---------------------------------------------------------------------------


def runs_in_dry_run(spec: ToolSpec) -> bool:
    """Whether a tool's real call is made in a dry run: reads yes, writes and critical never."""
    if spec.side_effect != "read":
        return False
    return spec.dry_run != "simulate"


def dry_run_output(spec: ToolSpec | None, tool_input: dict[str, Any]) -> Any:
    """The tool's declared simulated output (``${input.…}`` filled in), else one derived from its
    output schema."""
    if spec is None:
        return {}
    return _default_output(spec, spec.dry_run_output, tool_input)


def _default_output(spec: ToolSpec | None, declared: Any, tool_input: dict[str, Any]) -> Any:
    if declared is None:
        return example_of(spec.output_schema) if spec is not None else {}
    try:
        return resolve(declared, {"input": tool_input})
    except ReferenceError_:
        return declared


def example_of(schema: dict[str, Any]) -> Any:
    """A small value that fits a JSON schema: defaults, first enum values, zeros, empty strings."""
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combo in ("oneOf", "anyOf"):
        if schema.get(combo):
            return example_of(schema[combo][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example_of(v) for k, v in props.items() if k in schema.get("required", props)}
    examples: dict[str | None, Any] = {
        "array": [],
        "string": "",
        "integer": 0,
        "number": 0.0,
        "boolean": False,
        "null": None,
    }
    return examples.get(kind)


def sample_mock(directive: dict[str, Any], execution_id: str) -> tuple[float, bool]:
    """(latency in seconds, fails?) for one mocked attempt, from its seed alone: the same seed
    gives the same answer on any worker, after any restart."""
    mock = MockBehaviour.model_validate(directive["mock"])
    seed = directive.get("seed")
    rng = random.Random(f"{execution_id if seed is None else seed}:{directive['draw']}")
    latency_s = mock.latency.sample(rng) / 1000
    fails = int(directive["attempt"]) <= mock.fail_first or rng.random() < mock.failure_rate
    return (latency_s if math.isfinite(latency_s) else 0.0), fails
