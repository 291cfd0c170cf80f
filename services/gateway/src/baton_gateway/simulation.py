"""Simulated executions as the API takes them: ``dry_run``, ``mock_profile``, ``replay_of``.

Checked here, before anything is recorded, so a bad profile is a 422 with its reason (an unknown
tool, a step the plan does not have) rather than an execution that fails later.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from baton_common.plans import Plan
from baton_common.simulation import Simulation, SimulationInvalid, parse_profile
from pydantic import BaseModel, Field

from baton_gateway.domain import Invalid


class SimulationFields(BaseModel):
    """The fields of ``POST /v1/executions`` that make an execution a simulation."""

    dry_run: bool = Field(
        False,
        description="run the whole plan without side effects: reads run, writes and critical "
        "tools answer their declared dry-run output, no approval is asked",
    )
    dry_run_reads: Literal["real", "simulate"] = Field(
        "real", description="in a simulation, run read tools for real (default) or simulate them"
    )
    mock_profile: dict[str, Any] | str | None = Field(
        None,
        description="tools or steps replaced by mocks (latency, failure rate, canned output); "
        "implies a dry run for everything else",
    )
    replay_of: UUID | None = Field(
        None,
        description="serve the recorded outputs of this execution back (matched by step id and "
        "input); implies a dry run for calls with no recording",
    )


def simulation_request(body: SimulationFields, plan: Plan | None) -> dict[str, Any] | None:
    """The ``simulation`` recorded on ``execution.requested``, or None for a real execution."""
    if not (body.dry_run or body.mock_profile is not None or body.replay_of is not None):
        return None
    if body.mock_profile is not None and body.replay_of is not None:
        raise Invalid("give mock_profile or replay_of, not both")
    sim = Simulation(run_reads=body.dry_run_reads == "real")
    if body.mock_profile is not None:
        try:
            profile = parse_profile(body.mock_profile)
            profile.check(step_ids={s.id for s in plan.steps} if plan else None)
        except SimulationInvalid as exc:
            raise Invalid(str(exc)) from None
        sim = sim.model_copy(update={"mode": "mock", "mock": profile})
    elif body.replay_of is not None:
        sim = sim.model_copy(update={"mode": "replay", "replay_of": body.replay_of})
    return sim.model_dump(mode="json", exclude_defaults=False)
