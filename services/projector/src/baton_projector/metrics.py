"""Business metrics as a projection: counts and sums folded from the events, per workspace.

- ``executions`` (subject: the plan's name; outcome: started / succeeded / failed / cancelled)
- ``approval_decision`` (outcome: granted / rejected; total: seconds from opened to decided,
  people's decisions only)
- ``tool_attempts`` (subject: the tool; outcome: succeeded / failed; total: milliseconds)
- ``llm_calls`` (subject: the model) and ``llm_tokens`` (outcome: input / output; total: tokens):
  ``llm.generate``'s, and a model planner's (``plan.proposed``'s ``usage``)
- ``schedule_firings`` (subject: the schedule; outcome: tick / catchup / manual / …)

Each counted event's id is recorded in the same transaction, so a redelivered event counts once;
a rebuild truncates and folds the whole stream again to the same figures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.store import plain_text
from psycopg.sql import SQL, Identifier

from baton_projector import bulk

Key = tuple[str, str, str, str]  # workspace, metric, subject, outcome
Attempt = tuple[UUID, str, int, str]
COUNTED = (
    c.ExecutionStarted,
    c.ExecutionSucceeded,
    c.ExecutionFailed,
    c.ExecutionCancelled,
    c.PlanningFailed,
    c.StepSucceeded,
    c.StepFailed,
    c.ApprovalGranted,
    c.ApprovalRejected,
    c.ScheduleFired,
)


def _counted(e: Event) -> bool:
    """An event that changes a figure: a plan only when a model's planning spent tokens on it."""
    return isinstance(e, COUNTED) or (isinstance(e, c.PlanProposed) and e.usage is not None)


OUTCOME: dict[type[Event], str] = {
    c.ExecutionSucceeded: "succeeded",
    c.ExecutionFailed: "failed",
    c.ExecutionCancelled: "cancelled",
    c.PlanningFailed: "failed",
}
NOT_STARTED = "(not started)"
SIMULATION = "(simulation)"  # a dry run, mock or replay: not business, not counted
UNNAMED = "(unnamed)"


class Batch:
    """The increments of one batch, and what it learnt of plans and attempts on the way."""

    def __init__(self) -> None:
        self.sums: dict[Key, list[float]] = defaultdict(lambda: [0, 0.0])
        self.plans: dict[UUID, str] = {}
        self.attempts: dict[Attempt, str] = {}
        self.finished: list[Attempt] = []
        self.ended: set[Attempt] = set()
        self.known_plans: dict[UUID, str] = {}  # from earlier batches (not written again)

    def add(self, ws: str, metric: str, subject: str, outcome: str, total: float = 0.0) -> None:
        cell = self.sums[(ws, metric, subject, outcome)]
        cell[0] += 1
        cell[1] += total


class MetricsProjection:
    """Folds counted events into ``business_metrics``."""

    def __init__(self, schema: str, sums: str | None = None) -> None:
        self.s = Identifier(schema)
        # where the sums go: a rebuild's worker keeps its own, added to the others' at the end
        self.sums = Identifier(sums or schema)
        self.applied = 0

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        batch = Batch()
        # Dispatches are remembered whether seen before or not: writing them is idempotent.
        batch.attempts = {
            _attempt(e): call.tool
            for e in events
            if (call := c.call_of(e)) is not None
            and not (call.simulated and not call.simulated.get("real"))
        }
        # An attempt that ends in this batch needs no row (even when its end was counted before).
        batch.ended = {_attempt(e) for e in events if isinstance(e, c.StepSucceeded | c.StepFailed)}
        fresh = self._fresh(conn, [e for e in events if _counted(e)])
        self._preload(conn, batch, fresh)
        for e in fresh:
            self._count(conn, batch, e)
        self._save(conn, batch)
        self.applied += len(fresh)
        return len(fresh)

    def _fresh(self, conn: psycopg.Connection[Any], events: list[Event]) -> list[Event]:
        """The events not counted before (each once), their ids recorded. The query answers
        with the ids it did not insert, seldom any, rather than with every id it did."""
        if not events:
            return []
        rows = conn.execute(
            SQL(
                "WITH given AS (SELECT unnest(%s::uuid[]) AS id), added AS (INSERT INTO"
                " {s}.business_metric_events SELECT id FROM given ON CONFLICT DO NOTHING"
                " RETURNING event_id) SELECT id FROM given EXCEPT SELECT event_id FROM added"
            ).format(s=self.s),
            (bulk.uuids(e.event_id for e in events),),
        ).fetchall()
        counted = {r[0] for r in rows}  # before this batch
        fresh = []
        for e in events:
            if e.event_id not in counted:
                counted.add(e.event_id)  # an event twice in one batch counts once
                fresh.append(e)
        return fresh

    def _preload(self, conn: psycopg.Connection[Any], b: Batch, fresh: list[Event]) -> None:
        """What the batch's events need from earlier batches (tools of attempts, plans of
        executions), read in one query each rather than one per event."""
        ends = [e for e in fresh if isinstance(e, c.StepSucceeded | c.StepFailed)]
        keys = list({_attempt(e) for e in ends} - set(b.attempts))
        if keys:
            rows = conn.execute(
                SQL(
                    "SELECT a.execution_id, a.step_id, a.attempt, a.kind, a.tool"
                    " FROM {s}.business_metric_attempts a JOIN unnest(%s::uuid[], %s::text[],"
                    " %s::int[], %s::text[]) AS k(e, s, n, k) ON a.execution_id = k.e"
                    " AND a.step_id = k.s AND a.attempt = k.n AND a.kind = k.k"
                ).format(s=self.s),
                [list(column) for column in zip(*keys, strict=True)],
            ).fetchall()
            b.attempts.update({tuple(r[:4]): r[4] for r in rows})  # type: ignore[misc]
        ids = {
            e.__dict__.get("execution_id") or e.aggregate_id for e in fresh if type(e) in OUTCOME
        }
        ids -= {e.aggregate_id for e in fresh if isinstance(e, c.ExecutionStarted)}
        if ids:
            rows = conn.execute(
                SQL(
                    "SELECT execution_id, plan FROM {s}.business_metric_plans"
                    " WHERE execution_id = ANY(%s::uuid[])"
                ).format(s=self.s),
                (bulk.uuids(ids),),
            ).fetchall()
            b.known_plans.update({r[0]: r[1] for r in rows})

    def _count(self, conn: psycopg.Connection[Any], b: Batch, e: Event) -> None:
        ws = e.workspace_id
        if isinstance(e, c.ExecutionStarted) and e.simulation:
            b.plans[e.aggregate_id] = SIMULATION
        elif isinstance(e, c.ExecutionStarted):
            name = str((e.plan or {}).get("name") or UNNAMED)
            b.plans[e.aggregate_id] = plain_text(name) or UNNAMED  # a text column: no NUL
            b.add(ws, "executions", b.plans[e.aggregate_id], "started")
        elif type(e) in OUTCOME:
            plan = self._plan(b, e.__dict__.get("execution_id") or e.aggregate_id)
            if plan != SIMULATION:
                b.add(ws, "executions", plan, OUTCOME[type(e)])
        elif isinstance(e, c.StepSucceeded) and e.cached_from and e.kind == "run":
            if self._plan(b, e.aggregate_id) != SIMULATION:  # served by the smart cache
                b.add(ws, "cache_hits", "", "")
        elif isinstance(e, c.StepSucceeded | c.StepFailed) and e.kind == "run":
            self._attempt_outcome(conn, b, e)
        elif isinstance(e, c.ApprovalGranted | c.ApprovalRejected) and not e.automatic:
            outcome = "granted" if isinstance(e, c.ApprovalGranted) else "rejected"
            b.add(ws, "approval_decision", "", outcome, self._waited(conn, e))
        elif isinstance(e, c.ScheduleFired):
            b.add(ws, "schedule_firings", str(e.aggregate_id), e.reason)
        elif isinstance(e, c.PlanProposed) and isinstance(e.usage, dict):
            self._llm_use(b, ws, e.usage, int(e.usage.get("attempts") or 1))

    def _attempt_outcome(
        self, conn: psycopg.Connection[Any], b: Batch, e: c.StepSucceeded | c.StepFailed
    ) -> None:
        key = _attempt(e)
        tool = b.attempts.get(key)
        if tool is None:
            return  # never dispatched (a gate said no): not a tool attempt
        b.finished.append(key)
        ok = isinstance(e, c.StepSucceeded)
        duration = e.duration_ms if isinstance(e, c.StepSucceeded) else 0.0
        b.add(e.workspace_id, "tool_attempts", tool, "succeeded" if ok else "failed", duration)
        output = e.output if isinstance(e, c.StepSucceeded) else None
        if isinstance(output, dict) and isinstance(output.get("model"), str):
            usage = output.get("usage")
            usage = {**(usage if isinstance(usage, dict) else {}), "model": output["model"]}
            self._llm_use(b, e.workspace_id, usage, 1)

    def _llm_use(self, b: Batch, ws: str, usage: dict[str, Any], calls: int) -> None:
        """Model calls and their tokens in and out (``llm.generate``'s, or a model planner's)."""
        model = usage.get("model")
        if not isinstance(model, str):
            return
        for _ in range(calls):
            b.add(ws, "llm_calls", model, "")
        for side in ("input", "output"):
            tokens = usage.get(f"{side}_tokens")
            if isinstance(tokens, int | float):
                b.add(ws, "llm_tokens", model, side, float(tokens))

    def _plan(self, b: Batch, execution_id: UUID) -> str:
        return b.plans.get(execution_id) or b.known_plans.get(execution_id) or NOT_STARTED

    def _waited(
        self, conn: psycopg.Connection[Any], e: c.ApprovalGranted | c.ApprovalRejected
    ) -> float:
        """Seconds from the gate's opening (the approvals view, same transaction) to ``e``."""
        row = conn.execute(
            SQL("SELECT opened_at FROM {s}.approvals WHERE id = %s").format(s=self.s),
            (e.aggregate_id,),
        ).fetchone()
        return max(0.0, (e.occurred_at - row[0]).total_seconds()) if row else 0.0

    def _save(self, conn: psycopg.Connection[Any], b: Batch) -> None:
        """The batch's increments, plans and open attempts, each table in one statement."""
        cells: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0.0])
        for k, (count, total) in b.sums.items():  # text columns hold no NUL: keys may meet
            cell = cells[tuple(plain_text(part) for part in k)]
            cell[0] += count
            cell[1] += total
        sums = [(*k, int(v[0]), v[1]) for k, v in cells.items()]
        at = SQL("{s}.{t}").format
        bulk.insert(conn, at(s=self.sums, t=SQL("business_metrics AS m")), _SUM_TYPES, sums, _ADD)
        plans = list(b.plans.items())
        bulk.insert(conn, at(s=self.s, t=SQL("business_metric_plans")), _PLAN_TYPES, plans, _NEW)
        open_attempts = [(*k, t) for k, t in b.attempts.items() if k not in b.ended]
        table = at(s=self.s, t=SQL("business_metric_attempts"))
        bulk.insert(conn, table, _ATTEMPT_TYPES, open_attempts, _NEW)
        if b.finished:
            source, params = bulk.rows_from(_ATTEMPT_TYPES[:4], b.finished)
            conn.execute(SQL(_END_ATTEMPTS).format(s=self.s, rows=source), params)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            SQL(
                "TRUNCATE {s}.business_metrics, {s}.business_metric_events,"
                " {s}.business_metric_plans, {s}.business_metric_attempts"
            ).format(s=self.s)
        )


_SUM_TYPES = ("text", "text", "text", "text", "bigint", "float8")
_ADD = (
    "ON CONFLICT (workspace_id, metric, subject, outcome) DO UPDATE SET"
    " count = m.count + EXCLUDED.count, total = m.total + EXCLUDED.total"
)
_PLAN_TYPES = ("uuid", "text")
_ATTEMPT_TYPES = ("uuid", "text", "int", "text", "text")
_NEW = "ON CONFLICT DO NOTHING"
_END_ATTEMPTS = (
    "DELETE FROM {s}.business_metric_attempts a USING {rows} WHERE a.execution_id = r.c0"
    " AND a.step_id = r.c1 AND a.attempt = r.c2 AND a.kind = r.c3"
)


def _attempt(e: Any) -> Attempt:  # a step event: dispatched, succeeded or failed
    return (e.aggregate_id, e.step_id, e.attempt, e.kind)
