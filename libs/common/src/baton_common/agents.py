"""The agents of a plan, as its ``agent.*`` steps name them, and the checks a plan must pass.

An agent is named by the ``from`` of ``agent.send`` / ``agent.request`` steps and the ``agent``
of ``agent.receive`` steps; a message to any other name could never be delivered, so a plan that
sends one is refused before it runs (and, when the name comes from a reference, the step fails
at run time with the same words).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton_common.planproblems import PlanProblem

if TYPE_CHECKING:
    from baton_common.plans import Plan

SENDERS = ("agent.send", "agent.request")


def plan_agents(plan: Plan) -> set[str]:
    """The agent names a plan declares by using them."""
    names: set[str] = set()
    for step in plan.steps:
        for tool, data in _calls(step):
            field = "agent" if tool == "agent.receive" else "from" if tool in SENDERS else None
            value = data.get(field) if field else None
            if isinstance(value, str) and "${" not in value:
                names.add(value)
    return names


def check_agents(plan: Plan) -> list[PlanProblem]:
    """A message addressed to a name no step of the plan answers to."""
    known = plan_agents(plan)
    problems = []
    for step in plan.steps:
        for tool, data in _calls(step):
            to = data.get("to")
            if tool in SENDERS and isinstance(to, str) and "${" not in to and to not in known:
                listed = ", ".join(sorted(known)) or "none"
                problems.append(
                    PlanProblem(
                        step.id, "input.to", f"unknown agent {to!r} (this plan's agents: {listed})"
                    )
                )
    return problems


def _calls(step: Any) -> list[tuple[str, dict[str, Any]]]:
    calls = [(step.tool, step.input)]
    calls += [(a.tool, a.input) for a in step.alternatives]
    return calls
