"""The executor's side of simulated executions (dry runs, mocks, replays).

The Execution aggregate calls these at two points: when it starts (which simulation, with the
recordings a replay serves back, fixed into ``execution.started`` so a rebuild decides the same)
and when it dispatches a call (the directive the worker follows instead of the real call). A
simulated execution asks no person for approval and takes no lock or rate place: nothing it does
has an effect to approve or to protect, and a rehearsal must not block or slow real work. The
view lists each call with the gate it would have waited at.
"""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.events import Event
from baton_common.plans import Plan, Step
from baton_common.simulation import Simulation, SimulationInvalid, recordings_from
from baton_common.store import MemoryEventStore, PostgresEventStore

__all__ = ["SimulationInvalid", "directive", "replaced", "retry_delay", "simulation_of"]


def simulation_of(
    event: c.PlanProposed | c.ExecutionRequested,
    store: PostgresEventStore | MemoryEventStore,
    plan: Plan,
) -> Simulation | None:
    """The request's simulation, with a replay's recordings read from this executor's store.
    A mock profile's steps are checked here too: a plan drafted from words was not known to the
    gateway when it checked the profile."""
    if not event.simulation:
        return None
    try:
        simulation = Simulation.model_validate(event.simulation)
    except ValueError as exc:
        raise SimulationInvalid(f"simulation: {exc}") from None
    if simulation.mock is not None:
        simulation.mock.check(step_ids={s.id for s in plan.steps})
    if simulation.mode == "replay" and simulation.replay_of is not None:
        history: list[Event] = store.load(simulation.replay_of)
        if not history or history[0].workspace_id != event.workspace_id:
            raise SimulationInvalid(f"no recorded execution {simulation.replay_of} to replay")
        simulation.recordings = recordings_from(history)
    return simulation


def directive(
    simulation: Simulation | None,
    step: Step,
    kind: str,
    call: dict[str, Any],
    tool_input: dict[str, Any],
    attempt: int,
    variant: int,
) -> dict[str, Any] | None:
    """What the worker does for this call of a simulated execution (None: a real execution)."""
    if simulation is None:
        return None
    gate = step.gate() if kind == "run" and variant == 0 else None
    return simulation.directive(
        DEFAULT_CATALOGUE,
        step_id=step.id,
        kind=kind,
        tool=call["tool"],
        tool_input=tool_input,
        attempt=attempt,
        gate=gate,
    )


def replaced(stand_in: dict[str, Any] | None) -> bool:
    """Whether a stand-in answers the call (then it never runs in process, even a pure tool)."""
    return stand_in is not None and not stand_in.get("real")


def retry_delay(simulation: Simulation | None, delay: float) -> float:
    """A replay retries at once: its answers are recorded, so waiting changes nothing. A dry run
    or a mock keeps the plan's backoff (rehearsing the timing is part of the point)."""
    return 0.0 if simulation is not None and simulation.mode == "replay" else delay
