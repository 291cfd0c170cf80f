"""Where a re-run of a recorded execution behaved differently from the recording.

A re-run (``baton replay <id> --rerun``) is an execution in replay mode: each call whose step id
and resolved input match a recorded call gets the recorded result back; any other call is marked
on its task (``simulated.unrecorded``) and answered with the tool's dry-run output. Comparing the
two histories then says what changed: a step whose input differs, a new step with no recording,
a recorded step that is gone or did not run, and a different outcome. A pure function of the two
histories, so the CLI, a test or a promotion gate get the same answer.
"""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.events import Event

TERMINAL = {
    "execution.succeeded": "succeeded",
    "execution.failed": "failed",
    "execution.cancelled": "cancelled",
}


def divergences(recorded: list[Event], rerun: list[Event]) -> list[dict[str, Any]]:
    """Every difference in behaviour, in the order a reader follows them: calls, then outcomes."""
    found: list[dict[str, Any]] = []
    old_calls, new_calls = _calls(recorded), _calls(rerun)
    new_steps = _plan_steps(rerun)
    seen: set[tuple[str, str]] = set()
    for e in c.unfolded(rerun):  # a pure step's one event stands for its dispatch too
        if not isinstance(e, c.StepDispatched) or not (e.simulated or {}).get("unrecorded"):
            continue
        key: tuple[str, str] = (e.step_id, e.kind)
        if key in seen:
            continue
        seen.add(key)
        entry = {"step_id": key[0], "kind": key[1], "tool": e.tool, "input": e.input}
        if key in old_calls:
            was = old_calls[key][0]
            found.append(
                {
                    "divergence": "input_differs",
                    **entry,
                    "recorded": {"tool": was[0], "input": was[1]},
                }
            )
        else:
            found.append({"divergence": "new_step", **entry})
    for key, calls in old_calls.items():
        if key in new_calls:
            continue
        step_id, kind = key
        what = "removed_step" if step_id not in new_steps else "not_run"
        found.append(
            {"divergence": what, "step_id": step_id, "kind": kind, "tool": calls[0][0],
             "input": calls[0][1]}
        )  # fmt: skip
    found += _outcomes(recorded, rerun)
    return found


def _calls(history: list[Event]) -> dict[tuple[str, str], list[tuple[str, Any]]]:
    calls: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for e in c.unfolded(history):
        if isinstance(e, c.StepDispatched):
            calls.setdefault((e.step_id, e.kind), []).append((e.tool, e.input))
    return calls


def _plan_steps(history: list[Event]) -> set[str]:
    for e in history:
        if isinstance(e, c.ExecutionStarted):
            return {s["id"] for s in e.plan.get("steps", [])}
    return set()


def _step_states(history: list[Event]) -> dict[str, str]:
    states: dict[str, str] = {}
    for e in history:
        if isinstance(e, c.StepSucceeded) and e.kind == "run":
            states[e.step_id] = "succeeded"
        elif isinstance(e, c.StepFailed) and e.kind == "run" and e.final:
            states[e.step_id] = "failed"
        elif isinstance(e, c.StepSkipped):
            states[e.step_id] = "skipped"
        elif isinstance(e, c.StepCancelled):
            states[e.step_id] = "cancelled"
    return states


def outcome(history: list[Event]) -> str | None:
    """The execution's final status, if it ended."""
    ends = [TERMINAL[e.type] for e in history if e.type in TERMINAL]
    return ends[-1] if ends else None


def _outcomes(recorded: list[Event], rerun: list[Event]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    old, new = _step_states(recorded), _step_states(rerun)
    for step_id in sorted(old.keys() & new.keys()):
        if old[step_id] != new[step_id]:
            found.append(
                {"divergence": "step_outcome", "step_id": step_id, "recorded": old[step_id],
                 "rerun": new[step_id]}
            )  # fmt: skip
    if (was := outcome(recorded)) != (now := outcome(rerun)):
        found.append({"divergence": "outcome", "recorded": was, "rerun": now})
    return found


def describe(d: dict[str, Any]) -> str:
    """One line for people."""
    kind, step = d["divergence"], d.get("step_id")
    label = f"step {step!r}" + ("" if d.get("kind", "run") == "run" else f" ({d['kind']})")
    if kind == "input_differs":
        return f"{label}: input differs from the recording: was {d['recorded']}, now {d['tool']} {d['input']}"
    if kind == "new_step":
        return f"{label}: new step with no recording ({d['tool']} {d['input']})"
    if kind == "removed_step":
        return f"{label}: removed from the plan (recorded: {d['tool']} {d['input']})"
    if kind == "not_run":
        return f"{label}: recorded, but not run this time"
    if kind == "step_outcome":
        return f"{label}: {d['recorded']} in the recording, {d['rerun']} now"
    return f"execution: {d['recorded']} in the recording, {d['rerun']} now"
