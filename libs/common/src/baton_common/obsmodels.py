"""The observability read models' tables: step logs and business metrics (projector writes,
gateway reads). Kept apart from ``readmodels`` so each topic's tables live together."""

from __future__ import annotations

OBSERVABILITY_SQL = [
    """CREATE TABLE IF NOT EXISTS {s}.step_logs (
        seq bigserial PRIMARY KEY, execution_id uuid NOT NULL, workspace_id text NOT NULL,
        event_id uuid NOT NULL, n int NOT NULL, step_id text NOT NULL, attempt int NOT NULL,
        kind text NOT NULL, tool text NOT NULL, at timestamptz NOT NULL, level text NOT NULL,
        message text NOT NULL, cut boolean NOT NULL DEFAULT false,
        marker boolean NOT NULL DEFAULT false, UNIQUE (event_id, n))""",
    "CREATE INDEX IF NOT EXISTS step_logs_idx ON {s}.step_logs (execution_id, seq)",
]
