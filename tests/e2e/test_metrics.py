"""Business metrics on the engine as processes: the figures of ``GET /v1/metrics/summary`` (and
``baton stats``) equal the counts this test folds itself from the raw events on the stream, and
they are the same after ``baton projections rebuild``; LLM tokens and their cost per agent and
per saved-plan version; the engine's own figures (consumers, oldest pending, dead letters)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.approvals import approval_id_for
from baton_common.prices import cost_usd, parse_prices

from .conftest import LLM_PRICES

pytestmark = pytest.mark.e2e


def plan(name: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "steps": list(steps)}


OK = plan(
    "ok",
    {"id": "a", "tool": "mock.agent", "input": {"output": "x"}},
    {"id": "say", "tool": "debug.log", "input": {"message": "hi"}},
    {"id": "ask", "tool": "llm.generate", "input": {"prompt": "summarise: the sky is blue"}},
)
FLAKY = plan("flaky", {"id": "a", "tool": "mock.agent", "input": {"fail_times": 1}})
BROKEN = plan(
    "broken",
    {
        "id": "get",
        "tool": "http.request",
        "input": {"url": "http://127.0.0.1:9/nothing-listens"},
        "retry": {"max_attempts": 2, "backoff_s": 0.1},
    },
)
SLOW = plan("slow", {"id": "nap", "tool": "time.sleep", "input": {"seconds": 30}})
GATED = plan("gated", {"id": "pay", "tool": "mock.agent", "requires_approval": True})


def test_business_metrics_equal_the_events_and_survive_a_rebuild(engine: Engine) -> None:
    ws, client = workspace(engine)

    def run(p: dict[str, Any]) -> str:
        resp = client.post(f"{engine.url}/v1/executions", json={"plan": p})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["id"])

    done = [run(OK), run(OK), run(FLAKY), run(BROKEN)]
    slow = run(SLOW)
    granted, rejected = run(GATED), run(GATED)
    for eid, decision in ((granted, "approve"), (rejected, "reject")):
        decide(engine, client, eid, decision)
    schedule = client.post(
        f"{engine.url}/v1/schedules",
        json={"name": "nightly", "at": "2030-01-01T00:00:00Z", "plan": OK},
    ).json()["id"]
    assert client.post(f"{engine.url}/v1/schedules/{schedule}/trigger-now").status_code < 300
    client.post(f"{engine.url}/v1/executions/{slow}/cancel", json={"reason": "enough"})
    for eid in (*done, slow, granted, rejected, scheduled(engine, client, schedule)):
        wait(engine, client, eid)

    expected = fold(raw_events(engine, ws))
    assert expected["executions"]["started"] >= 7 and expected["schedules"]["firings"] == 1
    assert expected["approvals"]["decisions"] == 2 and expected["llm"]
    assert expected["cache"]["hits"] >= 1  # the second OK run's llm.generate came from the cache
    seen = eventually(lambda: figures(client, engine), expected)
    assert seen == expected
    stats = engine.cli("stats", env={"BATON_API_KEY": client.headers["Authorization"][7:]})
    assert stats.returncode == 0, stats.stderr
    assert "succeeded" in stats.stdout and "debug.log" in stats.stdout

    rebuilt = engine.cli("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert figures(client, engine) == expected


def workspace(engine: Engine) -> tuple[str, httpx.Client]:
    return engine.workspace("owner", "m")  # type: ignore[no-any-return]


def decide(engine: Engine, client: httpx.Client, eid: str, decision: str) -> None:
    gate = approval_id_for(uuid.UUID(eid), "pay")
    for _ in range(300):
        resp = client.post(
            f"{engine.url}/v1/approvals/{gate}/decision", json={"decision": decision}
        )
        if resp.status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(resp.text)


def scheduled(engine: Engine, client: httpx.Client, schedule: str) -> str:
    """The execution the schedule's firing started (once the gateway recorded it)."""
    for _ in range(300):
        items = client.get(f"{engine.url}/v1/executions", params={"schedule": schedule}).json()
        if items["items"]:
            return str(items["items"][0]["id"])
        time.sleep(0.1)
    raise AssertionError("the schedule's firing started nothing")


def wait(engine: Engine, client: httpx.Client, eid: str) -> None:
    for _ in range(600):
        view = client.get(f"{engine.url}/v1/executions/{eid}").json()
        if view.get("status") in ("succeeded", "failed", "cancelled"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{eid} still {view.get('status')}")


def eventually(read: Any, expected: dict[str, Any]) -> dict[str, Any]:
    """The projection's figures once it has caught up (it follows the stream)."""
    seen: dict[str, Any] = {}
    for _ in range(300):
        seen = read()
        if seen == expected:
            break
        time.sleep(0.1)
    return seen


def raw_events(engine: Engine, ws: str) -> list[dict[str, Any]]:
    """Every event of the workspace, as stored on the stream."""
    import nats

    async def read() -> list[dict[str, Any]]:
        nc = await nats.connect(**engine.nats())
        js = nc.jetstream()
        subject = f"baton.{ws}.>"
        info = await js.stream_info("BATON_EVENTS", subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        sub = await js.subscribe(subject, ordered_consumer=True, stream="BATON_EVENTS")
        out = []
        while len(out) < total:
            out.append(json.loads((await sub.next_msg(timeout=5)).data))
        await nc.close()
        return out

    return asyncio.run(read())


def fold(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures, counted here from the raw events (independently of the projector)."""
    plans: dict[str, str] = {}
    by_plan: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("started", "succeeded", "failed", "cancelled"), 0)
    )
    tools: dict[str, dict[str, float]] = defaultdict(lambda: {"ok": 0, "failed": 0, "ms": 0.0})
    dispatched: dict[tuple[Any, ...], str] = {}
    opened: dict[str, datetime] = {}
    decisions: dict[str, int] = defaultdict(int)
    waited = 0.0
    llm: dict[str, dict[str, int]] = defaultdict(
        lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0}
    )
    firings = 0
    cache_hits = 0
    end = {"execution.succeeded": "succeeded", "execution.failed": "failed",
           "execution.cancelled": "cancelled", "plan.failed": "failed"}  # fmt: skip
    for e in events:
        t, eid = e["type"], e.get("execution_id") or e["aggregate_id"]
        attempt = (e["aggregate_id"], e.get("step_id"), e.get("attempt"), e.get("kind"))
        if t == "execution.step_succeeded" and e.get("call"):  # a pure step: one event
            dispatched[attempt] = e["call"]["tool"]
        if t == "execution.started":
            plans[eid] = e["plan"].get("name") or "(unnamed)"
            by_plan[plans[eid]]["started"] += 1
        elif t in end:
            by_plan[plans.get(eid, "(not started)")][end[t]] += 1
        elif t == "execution.step_dispatched":
            dispatched[attempt] = e["tool"]
        elif t == "execution.step_succeeded" and e["kind"] == "run" and e.get("cached_from"):
            cache_hits += 1  # the smart cache answered: no tool attempt
        elif t in ("execution.step_succeeded", "execution.step_failed") and e["kind"] == "run":
            if attempt not in dispatched:
                continue  # a gate said no: the tool never ran
            tool = tools[dispatched[attempt]]
            tool["ok" if t.endswith("succeeded") else "failed"] += 1
            tool["ms"] += e.get("duration_ms", 0.0) if t.endswith("succeeded") else 0.0
            output = e.get("output")
            if t.endswith("succeeded") and isinstance(output, dict) and "model" in output:
                llm[output["model"]]["calls"] += 1
                for side in ("input", "output"):
                    llm[output["model"]][f"{side}_tokens"] += output["usage"][f"{side}_tokens"]
        elif t == "approval.opened":
            opened[e["aggregate_id"]] = datetime.fromisoformat(e["occurred_at"])
        elif t in ("approval.granted", "approval.rejected") and not e["automatic"]:
            decisions[t.split(".")[1]] += 1
            waited += (
                datetime.fromisoformat(e["occurred_at"]) - opened[e["aggregate_id"]]
            ).total_seconds()
        elif t == "schedule.fired":
            firings += 1
    count = sum(decisions.values())
    return {
        "executions": {
            **{
                o: sum(p[o] for p in by_plan.values())
                for o in ("started", "succeeded", "failed", "cancelled")
            },
            "by_plan": [{"plan": k, **v} for k, v in sorted(by_plan.items())],
        },
        "approvals": {
            "decisions": count,
            "granted": decisions["granted"],
            "rejected": decisions["rejected"],
            "mean_seconds_to_decision": round(waited / count, 3) if count else None,
        },
        "tools": {
            k: (int(v["ok"]), int(v["failed"]), round(v["ms"] / v["ok"], 1) if v["ok"] else None)
            for k, v in tools.items()
        },
        "llm": [{"model": k, **v, "cost_usd": _cost(k, v)} for k, v in sorted(llm.items())],
        "schedules": {"firings": firings},
        "cache": {
            "hits": cache_hits,
            "hit_ratio": round(
                cache_hits / (cache_hits + sum(v["ok"] + v["failed"] for v in tools.values())), 4
            )
            if cache_hits
            else 0.0,
        },
    }


def _cost(model: str, tokens: dict[str, int]) -> float | None:
    """What the engine's BATON_LLM_PRICES make of these tokens."""
    used = [(model, tokens["input_tokens"], tokens["output_tokens"])]
    return cost_usd(used, parse_prices(LLM_PRICES))


def figures(client: httpx.Client, engine: Engine) -> dict[str, Any]:
    totals = client.get(f"{engine.url}/v1/metrics/summary").json()["totals"]
    return {
        "executions": totals["executions"],
        "approvals": totals["approvals"],
        "tools": {t["tool"]: (t["succeeded"], t["failed"], t["mean_ms"]) for t in totals["tools"]},
        "llm": totals["llm"],
        "schedules": {"firings": totals["schedules"]["firings"]},
        "cache": totals["cache"],
    }


def test_llm_tokens_and_their_cost_per_agent_and_per_plan_version(engine: Engine) -> None:
    _ws, client = workspace(engine)
    asks = {"steps": [{"id": "ask", "tool": "llm.generate", "input": {"prompt": "Summarise: ok."}}]}
    name = f"costed-{uuid.uuid4().hex[:6]}"
    made = client.post(f"{engine.url}/v1/plans/{name}/versions", json={"plan": asks})
    assert made.status_code == 201, made.text
    run = client.post(f"{engine.url}/v1/executions", json={"plan_ref": {"name": name}})
    eid = run.json()["id"]
    wait(engine, client, eid)
    usage = client.get(f"{engine.url}/v1/executions/{eid}").json()["steps"]["ask"]["output"]
    tokens = {k: usage["usage"][k] for k in ("input_tokens", "output_tokens")}
    assert tokens["input_tokens"] > 0 and tokens["output_tokens"] > 0
    expected = {**tokens, "cost_usd": _cost("offline-extractive", tokens)}
    assert expected["cost_usd"] and expected["cost_usd"] > 0

    def agent() -> dict[str, Any]:
        found = client.get(f"{engine.url}/v1/agents/llm.generate").json()
        return {k: found[k] for k in ("input_tokens", "output_tokens", "cost_usd")}

    def version() -> dict[str, Any]:
        [v1] = client.get(f"{engine.url}/v1/plans/{name}").json()["versions"]
        return {k: v1["figures"][k] for k in ("input_tokens", "output_tokens", "cost_usd")}

    assert eventually(agent, expected) == expected
    assert eventually(version, expected) == expected
    tokens_total = client.get(f"{engine.url}/v1/agents/llm.generate").json()["tokens"]
    assert tokens_total == tokens["input_tokens"] + tokens["output_tokens"]


def test_the_engine_figures_show_consumers_oldest_pending_and_dead_letters(
    engine: Engine,
) -> None:
    ws, client = workspace(engine)
    ok = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": 1}}]}
    eid = client.post(f"{engine.url}/v1/executions", json={"plan": ok}).json()["id"]
    wait(engine, client, eid)
    durable = f"figures-{uuid.uuid4().hex[:8]}"
    subject = f"baton.{ws}.execution.succeeded"  # already on the stream: pending for a new one

    async def consumer(add: bool) -> None:
        import nats
        from nats.js import api

        nc = await nats.connect(**engine.nats())
        js = nc.jetstream()
        if add:
            config = api.ConsumerConfig(durable_name=durable, filter_subject=subject,
                                        ack_policy=api.AckPolicy.EXPLICIT)  # fmt: skip
            await js.add_consumer("BATON_EVENTS", config=config)
        else:
            await js.delete_consumer("BATON_EVENTS", durable)
        await nc.close()

    asyncio.run(consumer(add=True))
    try:
        engine_view = client.get(f"{engine.url}/v1/metrics/summary").json()["engine"]
    finally:
        asyncio.run(consumer(add=False))
    consumers = {c["name"]: c for c in engine_view["consumers"]}
    assert {"executor", "projector", "workers"} <= set(consumers), sorted(consumers)
    mine = consumers[durable]
    assert mine["pending"] == 1 and mine["ack_pending"] == 0
    assert mine["oldest_pending_age_s"] is not None and mine["oldest_pending_age_s"] >= 0
    assert engine_view["oldest_pending_age_s"] >= mine["oldest_pending_age_s"]
    assert engine_view["throughput"]["events"] >= 1  # this test's own events, a moment ago
    assert engine_view["dead_letters"]["workspace"] == 0
    assert isinstance(engine_view["dead_letters"]["total"], int)
    # a reader of the workspace gets the business figures, not the installation's
    key = client.post(
        f"{engine.url}/v1/workspaces/{ws}/keys", json={"role": "viewer", "name": "look"}
    ).json()["key"]
    seen = httpx.get(
        f"{engine.url}/v1/metrics/summary", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert seen["engine"] is None and "totals" in seen
