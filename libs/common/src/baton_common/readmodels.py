"""The read models' tables (written by the projector, read by the gateway)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from baton_common.obsmodels import OBSERVABILITY_SQL

SCHEMA_SQL = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.executions (
        id uuid PRIMARY KEY, workspace_id text NOT NULL, status text NOT NULL,
        request text, idempotency_key text, created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL, view jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS executions_list_idx ON {s}.executions (workspace_id, created_at DESC)",
    "CREATE INDEX IF NOT EXISTS executions_schedule_idx ON {s}.executions (workspace_id, (view->>'schedule_id'), created_at DESC) WHERE view ? 'schedule_id'",
    "CREATE INDEX IF NOT EXISTS executions_trigger_idx ON {s}.executions (workspace_id, (view->>'trigger_id'), created_at DESC) WHERE view ? 'trigger_id'",
    "CREATE INDEX IF NOT EXISTS executions_status_idx ON {s}.executions (workspace_id, status, created_at DESC)",
    """CREATE TABLE IF NOT EXISTS {s}.execution_events (
        seq bigserial PRIMARY KEY, execution_id uuid NOT NULL, event_id uuid NOT NULL UNIQUE,
        type text NOT NULL, occurred_at timestamptz NOT NULL, data jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS execution_events_idx ON {s}.execution_events (execution_id, seq)",
    "CREATE TABLE IF NOT EXISTS {s}.projection_state (name text PRIMARY KEY, generation bigint NOT NULL)",
    "INSERT INTO {s}.projection_state VALUES ('executions', 0) ON CONFLICT (name) DO NOTHING",
    # workspaces: name and current policy (the executor enforces it); audit: who did what, when
    """CREATE TABLE IF NOT EXISTS {s}.workspaces (
        id text PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL,
        policy jsonb NOT NULL DEFAULT '{{}}'::jsonb, policy_version int NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS {s}.audit (
        seq bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, workspace_id text NOT NULL,
        occurred_at timestamptz NOT NULL, actor text, action text NOT NULL, target text,
        detail jsonb NOT NULL DEFAULT '{{}}'::jsonb)""",
    """CREATE TABLE IF NOT EXISTS {s}.api_keys (
        id uuid PRIMARY KEY, workspace_id text NOT NULL, name text NOT NULL, role text NOT NULL,
        created_at timestamptz NOT NULL, created_by text, expires_at timestamptz,
        revoked_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS api_keys_ws_idx ON {s}.api_keys (workspace_id, created_at DESC)",
    """CREATE TABLE IF NOT EXISTS {s}.approvals (
        id uuid PRIMARY KEY, workspace_id text NOT NULL, execution_id uuid NOT NULL,
        step_id text NOT NULL, tool text NOT NULL, status text NOT NULL,
        opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
        deadline_at timestamptz, decided_at timestamptz, version int NOT NULL, view jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS approvals_ws_idx ON {s}.approvals (workspace_id, status, opened_at DESC)",
    "CREATE INDEX IF NOT EXISTS approvals_exec_idx ON {s}.approvals (execution_id)",
    "CREATE INDEX IF NOT EXISTS audit_idx ON {s}.audit (workspace_id, seq DESC)",
    # saved plans: every version, and every execution that ran one (per-version figures)
    """CREATE TABLE IF NOT EXISTS {s}.plan_versions (
        workspace_id text NOT NULL, name text NOT NULL, version int NOT NULL,
        content_hash text NOT NULL, author text, message text, created_at timestamptz NOT NULL,
        plan jsonb NOT NULL, PRIMARY KEY (workspace_id, name, version))""",
    """CREATE TABLE IF NOT EXISTS {s}.plan_runs (
        execution_id uuid PRIMARY KEY, workspace_id text NOT NULL, name text NOT NULL,
        version int NOT NULL, chosen_by text, status text NOT NULL,
        planned_at timestamptz NOT NULL, started_at timestamptz, finished_at timestamptz,
        tool_calls int NOT NULL DEFAULT 0, tool_ms float NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS plan_runs_idx ON {s}.plan_runs (workspace_id, name, version)",
    # the workspace's shared context: each key's newest write (a delete keeps the row, marked)
    """CREATE TABLE IF NOT EXISTS {s}.workspace_context (
        workspace_id text NOT NULL, key text NOT NULL, value jsonb, version int NOT NULL,
        written_by text NOT NULL, execution_id uuid, deleted boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL, PRIMARY KEY (workspace_id, key))""",
    # archived executions (retention.py): where each history went, its checksum, when
    """CREATE TABLE IF NOT EXISTS {s}.archived_executions (
        id uuid PRIMARY KEY, workspace_id text NOT NULL, key text NOT NULL,
        sha256 text NOT NULL, bytes bigint NOT NULL, events int NOT NULL,
        created_at timestamptz NOT NULL, archived_at timestamptz NOT NULL,
        restored_at timestamptz)""",
    # the sweep's candidates, oldest first: finished and not archived yet (retention.expired)
    "CREATE INDEX IF NOT EXISTS executions_expiry_idx ON {s}.executions (updated_at) WHERE status IN ('succeeded', 'failed', 'cancelled') AND NOT view ? 'archived_at'",
    "CREATE INDEX IF NOT EXISTS archived_executions_ws_idx ON {s}.archived_executions (workspace_id, archived_at DESC)",
    # archived executions' summary rows past the summary period, folded into counts per day of
    # creation (retention.fold_summaries); the summary period's candidates, oldest first
    """CREATE TABLE IF NOT EXISTS {s}.execution_day_counts (
        workspace_id text NOT NULL, day date NOT NULL, status text NOT NULL, plan text NOT NULL,
        count bigint NOT NULL, duration_ms double precision NOT NULL DEFAULT 0,
        PRIMARY KEY (workspace_id, day, status, plan))""",
    "CREATE INDEX IF NOT EXISTS executions_summary_idx ON {s}.executions (updated_at) WHERE view ? 'archived_at'",
    # when its summary was folded (not made again by a rebuild, not restored)
    "ALTER TABLE {s}.archived_executions ADD COLUMN IF NOT EXISTS folded_at timestamptz",
    # audit rows past BATON_AUDIT_RETENTION_DAYS (auditarchive.py): the oldest first, and where
    # each archived part went (a workspace's day may have several), its checksum, its rows
    "CREATE INDEX IF NOT EXISTS audit_time_idx ON {s}.audit (occurred_at, event_id)",
    """CREATE TABLE IF NOT EXISTS {s}.audit_archives (
        key text PRIMARY KEY, workspace_id text NOT NULL, day date NOT NULL,
        sha256 text NOT NULL, bytes bigint NOT NULL, rows int NOT NULL,
        first_at timestamptz NOT NULL, last_at timestamptz NOT NULL,
        archived_at timestamptz NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_archives_day_idx ON {s}.audit_archives (workspace_id, day)",
]
SCHEMA_SQL += OBSERVABILITY_SQL


def _tool_attempts() -> list[str]:
    from baton_common.toolstats import TABLE_SQL  # the agent registry's rows

    return TABLE_SQL


SCHEMA_SQL += _tool_attempts()


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    # The gateway and the projector start together, and concurrent CREATE … IF NOT EXISTS of
    # the same table can still collide (unique violation on pg_type): one at a time.
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(77002)")
        for statement in SCHEMA_SQL:
            conn.execute(SQL(statement).format(s=Identifier(schema)))
