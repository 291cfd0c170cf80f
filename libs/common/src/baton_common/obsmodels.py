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
    # business metrics: a count and a sum per (workspace, metric, subject, outcome)
    """CREATE TABLE IF NOT EXISTS {s}.business_metrics (
        workspace_id text NOT NULL, metric text NOT NULL, subject text NOT NULL,
        outcome text NOT NULL, count bigint NOT NULL DEFAULT 0,
        total double precision NOT NULL DEFAULT 0,
        PRIMARY KEY (workspace_id, metric, subject, outcome))""",
    # the events already counted (a redelivery or a replay counts once)
    "CREATE TABLE IF NOT EXISTS {s}.business_metric_events (event_id uuid PRIMARY KEY)",
    # what a later event needs to be counted: an execution's plan, an attempt's tool
    """CREATE TABLE IF NOT EXISTS {s}.business_metric_plans (
        execution_id uuid PRIMARY KEY, plan text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS {s}.business_metric_attempts (
        execution_id uuid NOT NULL, step_id text NOT NULL, attempt int NOT NULL,
        kind text NOT NULL, tool text NOT NULL, PRIMARY KEY (execution_id, step_id, attempt, kind))""",
]
