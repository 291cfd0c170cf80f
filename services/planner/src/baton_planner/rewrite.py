"""How failure patterns change a plan when it is made or reused (the learning engine's advice).

Two kinds of pattern, told apart by what the executor did with the failures:
- retried (the tool said a retry may help, and the attempts ran out): the tool's steps get more
  attempts, further apart;
- for good (not retried although attempts remained: bad input, a 4xx, a missing file, a
  retired API): more attempts would fail the same way. The step gets another tool first: its
  first alternative whose tool has no such pattern here, else a stand-in from the catalogue (a
  tool that takes the same input, with the same side effect and a keyword in common). The
  failing call is kept as the last alternative, so a failure of one input only (one missing
  file) still tries it. With neither, the step is left as it is.

Pure: plans in, plans out; what failed comes from the learner's events.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from typing import Any

from baton_common import contracts as c

DEFAULT_ATTEMPTS = 3  # the plan format's default ``retry.max_attempts``


@dataclass(slots=True)
class StepCall:
    """A step's tools (its own, then its alternatives') and which one runs now."""

    tools: list[str]
    max_attempts: int = DEFAULT_ATTEMPTS
    variant: int = 0


@dataclass(slots=True)
class StepCalls:
    """The calls of one execution's steps, from its plan, followed through its failures."""

    steps: dict[str, StepCall] = field(default_factory=dict)
    # One object for every execution of the same plan (``Learner.step_tools``): copied before
    # a failure moves one execution's step to an alternative (``own``).
    shared: bool = False

    @classmethod
    def of(cls, plan: dict[str, Any]) -> StepCalls:
        steps = {}
        for s in plan.get("steps", []):
            tools = [s["tool"], *(a.get("tool") for a in s.get("alternatives") or [])]
            attempts = (s.get("retry") or {}).get("max_attempts", DEFAULT_ATTEMPTS)
            # one string per tool and step id for every execution held (up to 20,000 of them)
            steps[sys.intern(str(s["id"]))] = StepCall(
                [sys.intern(str(t)) for t in tools], int(attempts)
            )
        return cls(steps)

    def key(self) -> tuple[tuple[str, tuple[str, ...], int, int], ...]:
        """What tells these calls from others: executions with equal keys can share one."""
        return tuple((s, tuple(c.tools), c.max_attempts, c.variant) for s, c in self.steps.items())

    def own(self) -> StepCalls:
        """A copy for one execution alone."""
        return StepCalls(
            {s: StepCall(c.tools, c.max_attempts, c.variant) for s, c in self.steps.items()}
        )

    def tool(self, step_id: str) -> str | None:
        """The tool the step's current attempt called."""
        call = self.steps.get(step_id)
        if call is None or call.variant >= len(call.tools):
            return None
        return call.tools[call.variant]

    def not_retried(self, e: c.StepFailed) -> bool:
        """The executor retries unless the tool said a retry cannot help: a failure before the
        last attempt and without a retry is one a retry cannot fix."""
        call = self.steps.get(e.step_id)
        attempts = call.max_attempts if call is not None else DEFAULT_ATTEMPTS
        return e.retry_at is None and e.attempt < attempts

    def failed(self, e: c.StepFailed) -> None:
        """After this failure the step's next alternative runs, if the executor said so."""
        call = self.steps.get(e.step_id)
        if call is not None and e.next_variant is not None:
            call.variant = e.next_variant


@dataclass(frozen=True)
class Failing:
    """The tools of a workspace with failure patterns, by kind."""

    retried: frozenset[str] = frozenset()
    for_good: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.retried or self.for_good)


def rewrite_plan(
    plan: dict[str, Any], failing: Failing, retry: dict[str, Any], catalogue: Any = None
) -> dict[str, Any]:
    """A copy of ``plan`` with the patterns' advice applied to every step."""
    plan = copy.deepcopy(plan)
    for step in plan.get("steps", []):
        if step.get("tool") in failing.for_good:
            _another_first(step, failing, catalogue)
        if step.get("tool") in failing.retried:
            _more_retries(step, retry)
    return plan


def _another_first(step: dict[str, Any], failing: Failing, catalogue: Any) -> None:
    alternatives = list(step.get("alternatives") or [])
    own = next(
        (i for i, a in enumerate(alternatives) if a.get("tool") not in failing.for_good), None
    )
    if own is not None:
        chosen = alternatives.pop(own)
    elif (stand_in := _stand_in(step["tool"], failing, catalogue)) is not None:
        chosen = {"tool": stand_in, "input": step.get("input", {})}
    else:
        return  # nothing else can do it: the step stays as it is, without useless retries
    original = {"tool": step["tool"], "input": step.get("input", {})}
    step["tool"], step["input"] = chosen["tool"], chosen.get("input", {})
    step["alternatives"] = [*alternatives, original]


def _stand_in(tool: str, failing: Failing, catalogue: Any) -> str | None:
    """A tool that can take this tool's calls as they are: the same input schema and side
    effect, and a keyword in common (the same job, not just the same shape)."""
    spec = catalogue.get(tool) if catalogue is not None else None
    if spec is None or not spec.keywords:
        return None
    for other in sorted(catalogue.all(), key=lambda s: s.name):
        if (
            other.name != tool
            and other.name not in failing.for_good
            and other.side_effect == spec.side_effect
            and other.input_schema == spec.input_schema
            and set(other.keywords) & set(spec.keywords)
        ):
            return str(other.name)
    return None


def _more_retries(step: dict[str, Any], retry: dict[str, Any]) -> None:
    current = step.get("retry") or {}
    if int(current.get("max_attempts", DEFAULT_ATTEMPTS)) < retry["max_attempts"]:
        step["retry"] = {**current, **retry}
