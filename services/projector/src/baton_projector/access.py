"""Read models of workspaces, API keys and the audit trail.

The audit trail is derived from the events: every event a person or key caused carries an
``actor``; each becomes one row (idempotent by event id). Workspaces and keys are upserts
guarded by the aggregate version, so a redelivered older event never undoes a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.sealing import redact_fields
from baton_common.views import execution_id_of
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

TABLES = ("workspaces", "api_keys", "audit")


class AccessProjection:
    """Folds workspace and key events, and every event with an actor, into their tables."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)
        self.applied = 0

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        n = 0
        audit = []
        for event in events:
            handler = _HANDLERS.get(type(event))
            if handler is not None:
                conn.execute(SQL(handler[0]).format(s=self.s), handler[1](event))
                n += 1
            if event.actor:
                audit.append(_audit_row(event))
        if audit:  # one pipelined statement for the batch: every request a person made has one
            with conn.cursor() as cur:
                cur.executemany(SQL(_AUDIT).format(s=self.s), audit)
        n += len(audit)
        self.applied += n
        return n

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        names = SQL(", ").join(SQL("{s}.{t}").format(s=self.s, t=Identifier(t)) for t in TABLES)
        conn.execute(SQL("TRUNCATE {} RESTART IDENTITY").format(names))


_AUDIT = (
    "INSERT INTO {s}.audit (event_id, workspace_id, occurred_at, actor, action, target, detail)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
)


def _audit_row(e: Event) -> tuple[Any, ...]:
    target = str(execution_id_of(e) or e.aggregate_id)
    if isinstance(e, c.WorkspaceCreated | c.MemberSet | c.MemberRemoved | c.WorkspacePolicySet):
        target = e.workspace_id
    if isinstance(e, c.WorkspaceContextPutRequested):  # the key, not the request's own id
        target = f"context/{e.key}"
    return (
        e.event_id,
        e.workspace_id,
        e.occurred_at,
        e.actor,
        e.type,
        target,
        Jsonb(_detail(e)),
    )


def _detail(e: Event) -> dict[str, Any]:
    if isinstance(e, c.ExecutionRequested):
        plan_name = (e.plan or {}).get("name")
        return {"request": (e.request or "")[:500], "plan": plan_name, "source": e.source}
    if isinstance(e, c.ApiKeyCreated):  # never the hash
        return {"name": e.name, "role": e.role, "expires_at": _iso(e.expires_at)}
    skip = {*c.Event.model_fields, "salt", "hash", "plan", "inputs", "payload", "headers"}
    kept = {
        k: v for k, v in e.model_dump(mode="json").items() if k not in skip and "secret" not in k
    }
    return redact_fields(kept)  # never a secret in the trail: sealed, or plain from old events


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


_HANDLERS: dict[type[Event], tuple[str, Any]] = {
    c.WorkspaceCreated: (
        "INSERT INTO {s}.workspaces (id, name, created_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        lambda e: (e.workspace_id, e.name, e.occurred_at),
    ),
    c.WorkspacePolicySet: (
        "UPDATE {s}.workspaces SET policy = %s, policy_version = %s"
        " WHERE id = %s AND policy_version < %s",
        lambda e: (Jsonb(e.policy), e.aggregate_version, e.workspace_id, e.aggregate_version),
    ),
    c.ApiKeyCreated: (
        "INSERT INTO {s}.api_keys (id, workspace_id, name, role, created_at, created_by,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        lambda e: (
            e.aggregate_id,
            e.workspace_id,
            e.name,
            e.role,
            e.occurred_at,
            e.actor,
            e.expires_at,
        ),
    ),
    c.ApiKeyRevoked: (
        "UPDATE {s}.api_keys SET revoked_at = %s WHERE id = %s",
        lambda e: (e.occurred_at, e.aggregate_id),
    ),
    c.ApiKeyRotated: (  # a new secret: the key works again
        "UPDATE {s}.api_keys SET revoked_at = NULL WHERE id = %s",
        lambda e: (e.aggregate_id,),
    ),
}
