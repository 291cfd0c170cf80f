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

from baton_common.prices import cost_usd, llm_prices

TABLE_SQL = [
    """CREATE TABLE IF NOT EXISTS {s}.tool_attempts (
        execution_id uuid NOT NULL, step_id text NOT NULL, attempt int NOT NULL,
        workspace_id text NOT NULL, tool text NOT NULL, dispatched_at timestamptz NOT NULL,
        outcome text, duration_ms double precision, error text, error_class text,
        tokens bigint NOT NULL DEFAULT 0, PRIMARY KEY (execution_id, step_id, attempt))""",
    "CREATE INDEX IF NOT EXISTS tool_attempts_tool_idx ON {s}.tool_attempts (tool, workspace_id)",
    # LLM usage per attempt (tables made before these columns get them here): what cost is priced on
    "ALTER TABLE {s}.tool_attempts ADD COLUMN IF NOT EXISTS model text",
    "ALTER TABLE {s}.tool_attempts ADD COLUMN IF NOT EXISTS input_tokens bigint NOT NULL DEFAULT 0",
    "ALTER TABLE {s}.tool_attempts ADD COLUMN IF NOT EXISTS output_tokens bigint NOT NULL DEFAULT 0",
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
    input_tokens: int = 0
    output_tokens: int = 0
    # At BATON_LLM_PRICES (prices.py); None when no model this tool used has a price.
    cost_usd: float | None = None


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


class Usage(BaseModel):
    """The LLM usage one output reports: its model and tokens in and out."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total: int = 0


def usage_of(output: Any) -> Usage:
    """What an output reports: ``usage.input_tokens`` / ``usage.output_tokens`` (what
    ``llm.generate`` and LLM agent files write), else ``usage.total_tokens``, else ``tokens``;
    the model from ``model``. Nothing readable is zero."""
    if not isinstance(output, dict):
        return Usage()
    model = output.get("model") if isinstance(output.get("model"), str) else None
    usage = output.get("usage")
    if not isinstance(usage, dict):
        return Usage(model=model, total=_count(output.get("tokens")))
    tokens_in, tokens_out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    total = tokens_in + tokens_out or _count(usage.get("total_tokens"))
    return Usage(model=model, input_tokens=tokens_in, output_tokens=tokens_out, total=total)


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and 0 <= value < 2**62 else 0


def tokens_of(output: Any) -> int:
    """LLM tokens an output reports (in and out together), else 0."""
    return usage_of(output).total


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

_USAGE = """
SELECT tool, {group} AS ws, model, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0)
FROM {s}.tool_attempts WHERE outcome = 'succeeded' AND (input_tokens > 0 OR output_tokens > 0)
  AND ({ws} IS NULL OR workspace_id = {ws}) AND ({tool} IS NULL OR tool = {tool})
GROUP BY tool, ws, model"""

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
    usage: dict[str, list[tuple[str | None, int, int]]] = {}
    for name, _ws, model, n_in, n_out in conn.execute(SQL(_USAGE).format(**fmt), params):
        usage.setdefault(name, []).append((model, int(n_in), int(n_out)))
    prices = llm_prices()
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
                input_tokens=sum(u[1] for u in usage.get(name, [])),
                output_tokens=sum(u[2] for u in usage.get(name, [])),
                cost_usd=cost_usd(usage.get(name, []), prices),
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
