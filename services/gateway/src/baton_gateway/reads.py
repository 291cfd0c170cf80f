"""Reads from the projector's read models (PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class ListFilters:
    """The list's optional filters: plan name, saved plan, words of the request, a time range."""

    plan: str | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    schedule: str | None = None
    trigger: str | None = None
    saved: str | None = None

    def clauses(self) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        if self.schedule:
            found.append(("view ? 'schedule_id' AND view->>'schedule_id' = %s", self.schedule))
        if self.trigger:
            found.append(("view ? 'trigger_id' AND view->>'trigger_id' = %s", self.trigger))
        if self.plan:
            found.append(("view->'plan'->>'name' = %s", self.plan))
        if self.saved:
            found.append(("view->'plan_ref'->>'name' = %s", self.saved))
        if self.text:
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found.append(("request ILIKE %s", f"%{escaped}%"))
        if self.since:
            found.append(("created_at >= %s", self.since))
        if self.until:
            found.append(("created_at < %s", self.until))
        return found


class ViewReader:
    """Execution list, detail and history, as the projector wrote them."""

    def __init__(self, url: str, schema: str, size: int = 8) -> None:
        self.pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
        )
        self.s = Identifier(schema)

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def _rows(self, statement: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL(statement).format(s=self.s), params)
            return cast(list[dict[str, Any]], await cur.fetchall())

    async def ready(self) -> bool:
        try:
            await self._rows("SELECT 1 FROM {s}.executions LIMIT 1", ())
            return True
        except Exception:
            return False

    async def get(self, execution_id: UUID) -> dict[str, Any] | None:
        rows = await self._rows("SELECT view FROM {s}.executions WHERE id = %s", (execution_id,))
        return rows[0]["view"] if rows else None

    async def listing(
        self,
        workspace_id: str,
        status: str | None,
        limit: int,
        before: str | None,
        filters: ListFilters | None = None,
    ) -> list[dict[str, Any]]:
        where, params = ["workspace_id = %s"], [workspace_id]
        if status:
            where.append("status = %s")
            params.append(status)
        if before:
            where.append("created_at < %s::timestamptz")
            params.append(before)
        if filters:
            for clause, value in filters.clauses():
                where.append(clause)
                params.append(value)
        statement = (
            "SELECT id, status, request, idempotency_key, created_at, updated_at,"
            " view->>'planner' AS planner, view->>'error' AS error,"
            " view->'plan'->>'name' AS plan_name,"
            " jsonb_array_length(COALESCE(view->'plan'->'steps', '[]'::jsonb)) AS steps"
            f" FROM {{s}}.executions WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT %s"
        )
        return await self._rows(statement, (*params, limit))

    async def events(
        self, execution_id: UUID, after: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT seq, event_id, type, occurred_at, data FROM {s}.execution_events"
            " WHERE execution_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            (execution_id, after, limit),
        )

    async def archived(
        self, workspace_id: str, limit: int, before: datetime | None, execution: UUID | None = None
    ) -> list[dict[str, Any]]:
        """The workspace's archived executions, last archived first (or the one asked for)."""
        where, params = ["a.workspace_id = %s"], [workspace_id]
        if before is not None:
            where.append("a.archived_at < %s")
            params.append(before)  # type: ignore[arg-type]
        if execution is not None:
            where.append("a.id = %s")
            params.append(execution)  # type: ignore[arg-type]
        return await self._rows(
            "SELECT a.id, a.workspace_id, x.status, x.request, a.created_at, a.archived_at,"
            " a.restored_at, a.key, a.sha256, a.bytes, a.events FROM {s}.archived_executions a"
            f" LEFT JOIN {{s}}.executions x ON x.id = a.id WHERE {' AND '.join(where)}"
            " ORDER BY a.archived_at DESC LIMIT %s",
            (*params, limit),
        )

    async def workspaces(self, only: str | None) -> list[dict[str, Any]]:
        where, params = ("WHERE id = %s", (only,)) if only else ("", ())
        return await self._rows(
            f"SELECT id, name, created_at, policy FROM {{s}}.workspaces {where} ORDER BY id",
            params,
        )

    async def keys(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT id, name, role, created_at, created_by, expires_at, revoked_at"
            " FROM {s}.api_keys WHERE workspace_id = %s ORDER BY created_at DESC",
            (workspace_id,),
        )

    async def workspace_context(
        self, workspace_id: str, key: str | None = None
    ) -> list[dict[str, Any]]:
        """The workspace's shared context: every key with a value, or the one ``key``."""
        where, params = "workspace_id = %s AND NOT deleted", [workspace_id]
        if key is not None:
            where, params = where + " AND key = %s", [workspace_id, key]
        return await self._rows(
            "SELECT key, value, version, written_by, execution_id, updated_at AS at"
            f" FROM {{s}}.workspace_context WHERE {where} ORDER BY key",
            tuple(params),
        )

    async def audit(
        self, workspace_id: str, limit: int, before: int | None, actor: str | None
    ) -> list[dict[str, Any]]:
        where = ["workspace_id = %s"]
        params: list[Any] = [workspace_id]
        if before:
            where.append("seq < %s")
            params.append(before)
        if actor:
            where.append("actor = %s")
            params.append(actor)
        return await self._rows(
            "SELECT seq, event_id, occurred_at, actor, action, target, detail FROM {s}.audit"
            f" WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT %s",
            (*params, limit),
        )

    async def counts(self, workspace_id: str) -> dict[str, int]:
        rows = await self._rows(  # with the summaries folded into per-day counts (retention)
            "SELECT status, sum(n) AS n FROM (SELECT status, count(*) AS n FROM {s}.executions"
            " WHERE workspace_id = %s GROUP BY status UNION ALL SELECT status, sum(count) AS n"
            " FROM {s}.execution_day_counts WHERE workspace_id = %s GROUP BY status) t"
            " GROUP BY status",
            (workspace_id, workspace_id),
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def workspace_events(
        self, workspace_id: str, after: int, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Every execution event of a workspace after ``after`` (the live list's stream)."""
        return await self._rows(
            "SELECT e.seq, e.execution_id, e.type, e.occurred_at, x.status"
            " FROM {s}.execution_events e JOIN {s}.executions x ON x.id = e.execution_id"
            " WHERE x.workspace_id = %s AND e.seq > %s ORDER BY e.seq LIMIT %s",
            (workspace_id, after, limit),
        )

    async def last_seq(self) -> int:
        rows = await self._rows("SELECT COALESCE(max(seq), 0) AS seq FROM {s}.execution_events", ())
        return int(rows[0]["seq"])

    async def plan_summary(self, workspace_id: str, since: datetime) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT COALESCE(view->'plan'->>'name', '(unnamed)') AS plan, count(*) AS executions,"
            " count(*) FILTER (WHERE status = 'succeeded') AS succeeded,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY " + _DURATION + ") AS p50_ms,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY " + _DURATION + ") AS p95_ms"
            " FROM {s}.executions WHERE workspace_id = %s AND created_at >= %s"
            " AND status IN ('succeeded', 'failed', 'cancelled') AND NOT view ? 'simulation'"
            " GROUP BY 1 ORDER BY 2 DESC",
            (workspace_id, since),
        )

    async def tool_summary(self, workspace_id: str, since: datetime) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT s.value->>'tool' AS tool, count(*) AS steps,"
            " count(*) FILTER (WHERE s.value->>'status' = 'failed') AS failed,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY (s.value->>'duration_ms')::float) AS p50_ms,"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY (s.value->>'duration_ms')::float) AS p95_ms"
            " FROM {s}.executions x, jsonb_each(x.view->'steps') s"
            " WHERE x.workspace_id = %s AND x.created_at >= %s AND NOT x.view ? 'simulation'"
            " AND s.value->>'status' IN ('succeeded', 'failed') GROUP BY 1 ORDER BY 2 DESC",
            (workspace_id, since),
        )

    async def throughput(self, workspace_id: str, since: datetime) -> list[dict[str, Any]]:
        return await self._rows(
            "SELECT date_trunc('minute', (view->>'finished_at')::timestamptz) AS minute,"
            " count(*) AS finished, count(*) FILTER (WHERE status = 'succeeded') AS succeeded"
            " FROM {s}.executions WHERE workspace_id = %s AND updated_at >= %s"
            " AND status IN ('succeeded', 'failed', 'cancelled') AND NOT view ? 'simulation'"
            " GROUP BY 1 ORDER BY 1",
            (workspace_id, since),
        )

    async def approvals(
        self, workspace_id: str, status: str | None, execution_id: UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        where, params = ["workspace_id = %s"], [workspace_id]
        if status:
            where.append("status = %s")
            params.append(status)
        if execution_id:
            where.append("execution_id = %s")
            params.append(str(execution_id))
        rows = await self._rows(
            f"SELECT view FROM {{s}}.approvals WHERE {' AND '.join(where)}"
            " ORDER BY opened_at DESC LIMIT %s",
            (*params, limit),
        )
        return [r["view"] for r in rows]

    async def approval(self, approval_id: UUID) -> dict[str, Any] | None:
        rows = await self._rows("SELECT view FROM {s}.approvals WHERE id = %s", (approval_id,))
        return rows[0]["view"] if rows else None


_DURATION = "extract(epoch FROM ((view->>'finished_at')::timestamptz - created_at)) * 1000"
