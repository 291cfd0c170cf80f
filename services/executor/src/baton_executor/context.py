"""The shared context of an execution: key/value memory its steps read and write.

``context.set`` and ``context.get`` steps never go to a tool worker: the executor resolves them
at dispatch from the execution's own state, in the commit that records them. A read sees the
newest write made by one of the step's dependencies (direct or not) or through the API, never a
write of a step running beside it: the same plan gives the same reads whatever the timing, and
a replay folds the recorded values. No I/O here (the aggregate's rule).

``scope: workspace`` reads and writes the workspace's context instead (``workspace_context.py``):
a read sees the newest value committed when the step is dispatched, whoever wrote it; the step's
output records what it saw, so a replay needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.limits import limits
from baton_common.plans import Plan

if TYPE_CHECKING:
    from baton_executor.workspace_context import WorkspaceContextPort

CONTEXT_TOOLS = ("context.set", "context.get")
# A value is JSON of at most this many bytes: context is for handing results on, not bulk data.
MAX_VALUE_BYTES = limits().context_value  # BATON_MAX_CONTEXT_VALUE_BYTES (messages too)
MAX_KEYS = 1000


class ContextValueTooLarge(ValueError):
    """A value over ``MAX_VALUE_BYTES`` (or not JSON): the message names the field."""


@dataclass(frozen=True)
class Written:
    """One write of a key."""

    version: int
    value: Any
    written_by: str
    step_id: str | None


def check_value(value: Any, field: str = "value") -> int:
    """The value's size as JSON, or ``ContextValueTooLarge`` naming ``field``."""
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ContextValueTooLarge(f"{field}: not a JSON value ({exc})") from None
    if size > MAX_VALUE_BYTES:
        raise ContextValueTooLarge(
            f"{field}: {size:,} bytes of JSON, over the context limit of {MAX_VALUE_BYTES:,}"
        )
    return size


class SharedContext:
    """The Execution aggregate's context: each key's writes, oldest first."""

    id: UUID
    plan: Plan | None
    needs: dict[str, list[str]]
    workspace_context: WorkspaceContextPort  # set by the application (the aggregate's ports)
    envelope: Any
    simulation: Any  # a dry run, mock or replay: no effect outside the execution
    pending: list[Event]  # the aggregate's events not yet collected

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)  # type: ignore[call-arg]
        self.context: dict[str, list[Written]] = {}

    def _event(self, event_class: type[Event], **fields: Any) -> Event:
        raise NotImplementedError  # the aggregate's

    def _step_succeeds(self, step_id: str, attempt: int, output: Any, **extra: Any) -> None:
        raise NotImplementedError  # Coordination's

    def _step_fails(self, step_id: str, attempt: int, error: str) -> None:
        raise NotImplementedError  # Coordination's

    # --- commands ---------------------------------------------------------------------------------

    def context_step(
        self, step_id: str, tool: str, tool_input: dict[str, Any], attempt: int
    ) -> None:
        """Run a context.set / context.get step now, from the execution's state."""
        key = str(tool_input["key"])
        shared = tool_input.get("scope") == "workspace"
        if tool == "context.set":
            self._context_set(step_id, key, tool_input.get("value"), attempt, shared)
            return
        seen = self.context_seen_by(step_id, key)
        if shared and (self.simulation is None or seen is None):  # a rehearsal's own writes first
            seen = self.workspace_context.read(self.envelope.workspace_id, key)
        if seen is None:
            output = {"value": tool_input.get("default"), "version": 0, "written_by": None}
        else:
            output = {"value": seen.value, "version": seen.version, "written_by": seen.written_by}
        self._step_succeeds(step_id, attempt, output)

    def _context_set(self, step_id: str, key: str, value: Any, attempt: int, shared: bool) -> None:
        try:
            check_value(value, "input.value")
        except ContextValueTooLarge as exc:
            self._step_fails(step_id, attempt, f"context.set: {exc}")
            return
        # A simulated execution (dry run, mock, replay) has no effect outside itself: its
        # workspace writes stay in its own context, where its later reads find them.
        if shared and self.simulation is None:
            self._workspace_set(step_id, key, value, attempt)
            return
        if key not in self.context and len(self.context) >= MAX_KEYS:
            self._step_fails(step_id, attempt, f"context.set: input.key: over {MAX_KEYS} keys")
            return
        version = self._write(key, value, step_id, step_id)
        self._step_succeeds(step_id, attempt, {"key": key, "version": version})

    def _workspace_set(self, step_id: str, key: str, value: Any, attempt: int) -> None:
        """Write the workspace's key in the commit that records the step (exactly once)."""
        written = self.workspace_context.write(
            self.envelope.workspace_id,
            key,
            value,
            f"{self.id}:{step_id}",  # other executions read it: say which one wrote it
            **self.envelope.fields(),
            execution_id=self.id,
            step_id=step_id,
        )
        self.pending.append(written)  # the key's event, committed with this execution's
        self._step_succeeds(step_id, attempt, {"key": key, "version": written.version})

    def context_put(self, request: c.ContextPutRequested) -> None:
        """A write through the API: seen by every step dispatched after it."""
        try:
            check_value(request.value)
        except ContextValueTooLarge:
            return  # the gateway refused it already; an old or forged request changes nothing
        self._write(request.key, request.value, f"api:{request.actor or 'anonymous'}", None)

    def _write(self, key: str, value: Any, written_by: str, step_id: str | None) -> int:
        version = len(self.context.get(key, [])) + 1
        self._event(
            c.ContextWritten,
            key=key,
            value=value,
            version=version,
            written_by=written_by,
            step_id=step_id,
        )
        return version

    # --- queries ----------------------------------------------------------------------------------

    def context_seen_by(self, step_id: str, key: str) -> Written | None:
        """The newest write of ``key`` that ``step_id`` may see: by the API, or by a step it
        depends on (directly or through others)."""
        before = self.ancestors(step_id)
        visible = [w for w in self.context.get(key, []) if w.step_id is None or w.step_id in before]
        return visible[-1] if visible else None

    def ancestors(self, step_id: str) -> set[str]:
        found: set[str] = set()
        todo = list(self.needs.get(step_id, []))
        while todo:
            step = todo.pop()
            if step not in found:
                found.add(step)
                todo += self.needs.get(step, [])
        return found

    # --- state from events ------------------------------------------------------------------------

    def on_context_written(self, e: c.ContextWritten) -> None:
        self.context.setdefault(e.key, []).append(
            Written(e.version, e.value, e.written_by, e.step_id)
        )
