"""The agent registry's read side: how each tool has performed, from the ``tool_attempts`` read
model that the projector keeps (one row per attempt of a step: dispatched, then its outcome).

The gateway lists it (``GET /v1/agents``, ``GET /v1/tools``); the planner reads it to prefer the
tools that succeed more and answer faster. Figures are computed from the rows on each read, so
they are exactly what the events say, after a rebuild too.
"""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, Field

TABLE_SQL = [
    """CREATE TABLE IF NOT EXISTS {s}.tool_attempts (
        execution_id uuid NOT NULL, step_id text NOT NULL, attempt int NOT NULL,
        workspace_id text NOT NULL, tool text NOT NULL, dispatched_at timestamptz NOT NULL,
        outcome text, duration_ms double precision, error text, error_class text,
        tokens bigint NOT NULL DEFAULT 0, PRIMARY KEY (execution_id, step_id, attempt))""",
    "CREATE INDEX IF NOT EXISTS tool_attempts_tool_idx ON {s}.tool_attempts (tool, workspace_id)",
]


class AgentStats(BaseModel):
    """One tool's figures, in one workspace or across all."""

    name: str
    workspace_id: str | None = None
    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    success_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    retries: int = 0
    error_classes: dict[str, int] = Field(default_factory=dict)
    tokens: int = 0


_CLASSES = [
    (re.compile(r"timed out"), "timeout"),
    (re.compile(r"input does not fit|needs a non-empty"), "bad_input"),
    (re.compile(r"answered 4\d\d"), "http_4xx"),
    (re.compile(r"answered 5\d\d"), "http_5xx"),
    (re.compile(r"no worker implements|cannot run on this worker"), "unavailable"),
    (re.compile(r"worker lost the step"), "worker_lost"),
    (re.compile(r"^([A-Z]\w*(?:Error|Exception|Exit))\b"), ""),
]


def error_class(error: str) -> str:
    """A short, stable class of an error message, for counting alike failures together."""
    for pattern, name in _CLASSES:
        if match := pattern.search(error):
            return name or match.group(1)
    return "error"


def tokens_of(output: Any) -> int:
    """LLM tokens an output reports (``usage.total_tokens`` or ``tokens``), else 0."""
    if not isinstance(output, dict):
        return 0
    usage = output.get("usage")
    value = usage.get("total_tokens") if isinstance(usage, dict) else output.get("tokens")
    return int(value) if isinstance(value, int | float) and value >= 0 else 0


_SELECT = """
SELECT tool, {group} AS ws, count(*),
  count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome = 'failed'),
  count(*) FILTER (WHERE outcome IS NULL),
  percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome = 'succeeded'),
  percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome = 'succeeded'),
  percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome = 'succeeded'),
  count(*) FILTER (WHERE attempt > 1), coalesce(sum(tokens), 0)
FROM {s}.tool_attempts WHERE ({ws} IS NULL OR workspace_id = {ws}) AND ({tool} IS NULL OR tool = {tool})
GROUP BY tool, ws ORDER BY tool"""

_ERRORS = """
SELECT tool, {group} AS ws, error_class, count(*) FROM {s}.tool_attempts
WHERE outcome = 'failed' AND ({ws} IS NULL OR workspace_id = {ws}) AND ({tool} IS NULL OR tool = {tool})
GROUP BY tool, ws, error_class"""


def read_stats(
    conn: psycopg.Connection[Any],
    schema: str,
    workspace_id: str | None = None,
    tool: str | None = None,
) -> list[AgentStats]:
    """Per tool: of one workspace when given, else across every workspace."""
    group = SQL("workspace_id") if workspace_id else SQL("NULL::text")
    params = {"ws": workspace_id, "tool": tool}
    fmt = {
        "s": Identifier(schema),
        "group": group,
        "ws": SQL("%(ws)s::text"),
        "tool": SQL("%(tool)s::text"),
    }
    rows = conn.execute(SQL(_SELECT).format(**fmt), params).fetchall()
    errors: dict[str, dict[str, int]] = {}
    for name, _ws, cls, n in conn.execute(SQL(_ERRORS).format(**fmt), params).fetchall():
        errors.setdefault(name, {})[cls or "error"] = int(n)
    out = []
    for name, ws, calls, ok, failed, running, p50, p95, p99, retries, tokens in rows:
        finished = ok + failed
        out.append(
            AgentStats(
                name=name,
                workspace_id=ws,
                calls=calls,
                succeeded=ok,
                failed=failed,
                running=running,
                success_rate=ok / finished if finished else None,
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
                retries=retries,
                error_classes=errors.get(name, {}),
                tokens=int(tokens),
            )
        )
    return out


class StatsReader:
    """``read_stats`` through a short-lived connection, cached for ``ttl_s`` (the planner's feed)."""

    def __init__(self, url: str, schema: str, ttl_s: float = 5.0) -> None:
        self.url, self.schema, self.ttl_s = url, schema, ttl_s
        self._cache: dict[str | None, tuple[float, list[AgentStats]]] = {}
        self._pool: ConnectionPool[Any] | None = None

    def _connections(self) -> ConnectionPool[Any]:
        """A small pool, opened on first use: a read costs a query, not a connection."""
        if self._pool is None:
            self._pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=4,
                kwargs={"autocommit": True, "connect_timeout": 5},
                open=True,
            )
        return self._pool

    def get(self, workspace_id: str | None = None) -> list[AgentStats]:
        hit = self._cache.get(workspace_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            with self._connections().connection(timeout=5) as conn:
                stats = read_stats(conn, self.schema, workspace_id)
        except (psycopg.Error, PoolTimeout):
            stats = []  # no read model yet: plan without figures
        self._cache[workspace_id] = (time.monotonic(), stats)
        return stats
