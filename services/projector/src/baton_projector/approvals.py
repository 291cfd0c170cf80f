"""The approvals read model: each gate's current state and history, for the inbox.

A gate's view is a fold of its ``approval.*`` events (one function, ``apply``), written with the
aggregate version so a redelivered older event never overwrites a newer state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.sealing import redact
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

View = dict[str, Any]
OUTCOME = {
    c.ApprovalGranted: "granted",
    c.ApprovalRejected: "rejected",
    c.ApprovalCancelled: "cancelled",
    c.ApprovalAnswered: "answered",
}


def apply(view: View | None, e: Event) -> View | None:
    """The gate's view after ``e`` (None until it is opened)."""
    if isinstance(e, c.ApprovalOpened):
        view = {
            "id": str(e.aggregate_id),
            "workspace_id": e.workspace_id,
            "execution_id": str(e.execution_id),
            "step_id": e.step_id,
            "tool": e.tool,
            "input": redact(e.input),  # a secret tool input (sealed) as ***
            "policy": e.policy,
            "message": e.message,
            "context": e.context,
            "kind": e.kind,
            "approvers": e.approvers,
            "min_approvals": e.min_approvals,
            "deadline_at": _iso(e.deadline_at),
            "status": "pending",
            "votes": [],
            "decided_input": None,
            "opened_at": e.occurred_at.isoformat(),
            "decided_at": None,
            "history": [],
        }
    if view is None:
        return None
    view["history"].append(_entry(e))
    if isinstance(e, c.ApprovalVoted):
        view["votes"].append({"user": e.user, "decision": e.decision, "comment": e.comment})
    elif isinstance(e, c.ApprovalEscalated):
        view.update(approvers=e.approvers, deadline_at=_iso(e.deadline_at), escalated=True)
    elif type(e) in OUTCOME:
        view.update(status=OUTCOME[type(e)], decided_at=e.occurred_at.isoformat())
        if isinstance(e, c.ApprovalGranted):
            view["decided_input"] = redact(e.input)
        if isinstance(e, c.ApprovalAnswered):
            view["answer"] = e.answer
    elif isinstance(e, c.ApprovalExpired) and e.outcome != "escalate":
        view["expired"] = True
    return view


def _entry(e: Event) -> dict[str, Any]:
    data = e.model_dump(mode="json", exclude={*Event.model_fields} - {"actor"})
    data.pop("execution_id", None)
    data.pop("step_id", None)
    return {"type": e.type, "at": e.occurred_at.isoformat(), **redact(data)}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class ApprovalProjection:
    """Folds ``approval.*`` events into the ``approvals`` table."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)
        self.applied = 0

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        mine = [e for e in events if e.type.startswith("approval.")]
        if not mine:
            return 0
        ids = list({e.aggregate_id for e in mine})
        rows = conn.execute(
            SQL("SELECT id, version, view FROM {s}.approvals WHERE id = ANY(%s) FOR UPDATE").format(
                s=self.s
            ),
            (ids,),
        ).fetchall()
        state = {r[0]: (r[1], r[2]) for r in rows}
        for e in mine:
            version, view = state.get(e.aggregate_id, (0, None))
            if e.aggregate_version <= version:
                continue  # seen already (redelivery, or a rebuild's replay)
            state[e.aggregate_id] = (e.aggregate_version, apply(view, e))
            self.applied += 1
        for approval_id in ids:
            version, view = state.get(approval_id, (0, None))
            if view is not None:
                self._save(conn, version, view)
        return len(mine)

    def _save(self, conn: psycopg.Connection[Any], version: int, v: View) -> None:
        conn.execute(
            SQL(
                "INSERT INTO {s}.approvals (id, workspace_id, execution_id, step_id, tool, status,"
                " opened_at, updated_at, deadline_at, decided_at, version, view) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, now(), %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " status = EXCLUDED.status, updated_at = now(), deadline_at = EXCLUDED.deadline_at,"
                " decided_at = EXCLUDED.decided_at, version = EXCLUDED.version, view = EXCLUDED.view"
            ).format(s=self.s),
            (
                v["id"],
                v["workspace_id"],
                v["execution_id"],
                v["step_id"],
                v["tool"],
                v["status"],
                v["opened_at"],
                v["deadline_at"],
                v["decided_at"],
                version,
                Jsonb(v),
            ),
        )

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.approvals").format(s=self.s))
