"""The business metrics of a workspace, as ``GET /v1/metrics/summary`` shows them: all-time
figures from the projector's ``business_metrics`` projection (rebuildable from the events)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, cast

from baton_common.prices import cost_usd, llm_prices
from psycopg.sql import SQL

from baton_gateway.services import Services

OUTCOMES = ("started", "succeeded", "failed", "cancelled")


async def business(s: Services, workspace_id: str) -> dict[str, Any]:
    rows = await _rows(s, workspace_id)
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["metric"]].append(r)
    return {
        "executions": _executions(by["executions"]),
        "approvals": _approvals(by["approval_decision"]),
        "tools": _tools(by["tool_attempts"]),
        "llm": _llm(by["llm_calls"], by["llm_tokens"]),
        "schedules": _schedules(by["schedule_firings"]),
        "cache": _cache(by["cache_hits"], by["tool_attempts"]),
    }


def _cache(hits: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """Step results the smart cache served, and their share of all step results."""
    served = sum(int(r["count"]) for r in hits)
    ran = sum(int(r["count"]) for r in attempts)
    return {"hits": served, "hit_ratio": round(served / (served + ran), 4) if served else 0.0}


async def _rows(s: Services, workspace_id: str) -> list[dict[str, Any]]:
    async with s.reader.pool.connection() as conn:
        cur = await conn.execute(
            SQL(
                "SELECT metric, subject, outcome, count, total FROM {s}.business_metrics"
                " WHERE workspace_id = %s ORDER BY metric, subject, outcome"
            ).format(s=s.reader.s),
            (workspace_id,),
        )
        return cast(list[dict[str, Any]], await cur.fetchall())


def _executions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    plans: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for r in rows:
        plans[r["subject"]][r["outcome"]] += int(r["count"])
    totals = {o: sum(p[o] for p in plans.values()) for o in OUTCOMES}
    return {**totals, "by_plan": [{"plan": name, **n} for name, n in sorted(plans.items())]}


def _approvals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    count = {r["outcome"]: int(r["count"]) for r in rows}
    decisions = sum(count.values())
    seconds = sum(float(r["total"]) for r in rows)
    return {
        "decisions": decisions,
        "granted": count.get("granted", 0),
        "rejected": count.get("rejected", 0),
        "mean_seconds_to_decision": round(seconds / decisions, 3) if decisions else None,
    }


def _tools(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tools: dict[str, dict[str, float]] = defaultdict(
        lambda: {"succeeded": 0, "failed": 0, "ms": 0.0}
    )
    for r in rows:
        tools[r["subject"]][r["outcome"]] += int(r["count"])
        tools[r["subject"]]["ms"] += float(r["total"])
    out = []
    for tool, t in sorted(tools.items()):
        attempts = int(t["succeeded"] + t["failed"])
        out.append(
            {
                "tool": tool,
                "attempts": attempts,
                "succeeded": int(t["succeeded"]),
                "failed": int(t["failed"]),
                "success_rate": round(t["succeeded"] / attempts, 4) if attempts else None,
                "mean_ms": round(t["ms"] / t["succeeded"], 1) if t["succeeded"] else None,
            }
        )
    return out


def _llm(calls: list[dict[str, Any]], tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    models: dict[str, dict[str, int]] = defaultdict(
        lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0}
    )
    for r in calls:
        models[r["subject"]]["calls"] += int(r["count"])
    for r in tokens:
        models[r["subject"]][f"{r['outcome']}_tokens"] += int(r["total"])
    prices = llm_prices()
    return [
        {
            "model": m,
            **n,
            "cost_usd": cost_usd([(m, n["input_tokens"], n["output_tokens"])], prices),
        }
        for m, n in sorted(models.items())
    ]


def _schedules(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, int] = defaultdict(int)
    for r in rows:
        per[r["subject"]] += int(r["count"])
    return {
        "firings": sum(per.values()),
        "by_schedule": [{"schedule_id": k, "firings": v} for k, v in sorted(per.items())],
    }
