"""Steps the executor finishes itself, at dispatch, from the execution's own state: the shared
context (``context.*``), the agent messenger (``agent.*``) and results from the smart cache.

The Execution aggregate inherits this; its dispatch asks ``coordinate`` first, and a step run
here is recorded with the same events a worker's result would give (``StepSucceeded`` /
``StepFailed``), so the view, the replay and the scheduler need nothing new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.events import Event
from baton_common.store import Timer

from baton_executor.cache import CachedResults
from baton_executor.context import CONTEXT_TOOLS, SharedContext
from baton_executor.messenger import AGENT_TOOLS, Messenger

MESSAGE_TIMER = "message_timeout"


class Coordination(SharedContext, Messenger, CachedResults):
    """Context, messages and cache hits of an execution (a mixin of ``Execution``)."""

    timers_set: list[Timer]
    timers_clear: list[str]
    steps: dict[str, Any]
    envelope: Any
    coordinated = False  # a step finished inline: the scheduler looks again for ready steps

    def coordinate(
        self, step_id: str, tool: str, tool_input: dict[str, Any], attempt: int, now: datetime
    ) -> bool:
        """Run the step here if it is one of ours (or cached); False: hand it to a worker."""
        if tool in CONTEXT_TOOLS + AGENT_TOOLS and (problem := _misfit(tool, tool_input)):
            self._step_fails(step_id, attempt, problem)
        elif tool in CONTEXT_TOOLS:
            self.context_step(step_id, tool, tool_input, attempt)
        elif tool in AGENT_TOOLS:
            self.agent_step(step_id, tool, tool_input, attempt, now)
        elif not self.cached_step(step_id, tool, tool_input, attempt, now):
            return False
        return True

    def coordination_timer(self, payload: dict[str, Any]) -> bool:
        if payload.get("kind") != MESSAGE_TIMER:
            return False
        self.message_timed_out(payload)
        return True

    def coordination_command(self, event: Event) -> None:
        """A command for the execution's context or messages, from the API or a tool."""
        if isinstance(event, c.ContextPutRequested):
            self.context_put(event)
        elif isinstance(event, c.AgentMessagePosted):
            self.post_message(event)

    def apply(self, event: Event) -> None:
        super().apply(event)  # type: ignore[misc]
        self.track_waits(event)
        self.track_calls(event)  # a pure step's one event too (a wait is never pure)

    # --- how a step ends here ---------------------------------------------------------------------

    def _step_succeeds(self, step_id: str, attempt: int, output: Any, **extra: Any) -> None:
        self._event(c.StepSucceeded, step_id=step_id, attempt=attempt, output=output, **extra)
        self.coordinated = True

    def _step_fails(self, step_id: str, attempt: int, error: str) -> None:
        """Not retried: the same input would fail the same way."""
        self._wait_fails(step_id, attempt, error)

    def _wait_fails(self, step_id: str, attempt: int, error: str) -> None:
        self._event(c.StepFailed, step_id=step_id, attempt=attempt, error=error, final=True)
        self._on_final_failure(step_id, "run", error)
        self.coordinated = True

    def _set_timer(self, timer: Timer) -> None:
        self.timers_set.append(timer)

    def _clear_timer(self, timer_id: str) -> None:
        self.timers_clear.append(timer_id)

    # --- the aggregate's ------------------------------------------------------------------------

    def _variant(self, step_id: str) -> int:
        return int(self.steps[step_id].variant)

    def _workspace(self) -> str:
        return str(self.envelope.workspace_id)

    def _on_final_failure(self, step_id: str, kind: str, error: str) -> None:
        raise NotImplementedError


def _misfit(tool: str, tool_input: dict[str, Any]) -> str | None:
    """Why the resolved input does not fit the tool's schema (references resolve only now)."""
    spec = DEFAULT_CATALOGUE.get(tool)
    assert spec is not None
    errors = sorted(spec.input_validator().iter_errors(tool_input), key=str)
    if not errors:
        return None
    path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
    return f"input does not fit {tool}: {path}: {errors[0].message}"
