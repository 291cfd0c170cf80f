"""The engine end to end: requests and plans through HTTP and the CLI, views, history, rebuild."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import psycopg
import pytest

from tests.e2e.conftest import retried_agent

pytestmark = pytest.mark.e2e

DEMO = "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"

PLAN_YAML = """
name: greet
steps:
  - id: fetch_a
    tool: mock.agent
    input: {task: "fetch a", output: {name: "Ada"}}
  - id: fetch_b
    tool: mock.agent
    input: {task: "fetch b", output: {name: "Grace"}, fail_times: 1}
    retry: {max_attempts: 3, backoff_s: 0.05}
  - id: greet
    tool: text.template
    input:
      template: "Hello {a} and {b}, from {who}"
      values: {a: "${steps.fetch_a.output.result.name}", b: "${steps.fetch_b.output.result.name}", who: "${input.who}"}
outputs:
  greeting: "${steps.greet.output.text}"
"""


def _submit(engine: Engine, body: dict, **headers: str) -> httpx.Response:
    return engine.http.post(f"{engine.url}/v1/executions", json=body, headers=headers, timeout=30)


def test_request_in_words_runs_to_success_over_http(engine: Engine) -> None:
    resp = _submit(engine, {"request": DEMO})
    assert resp.status_code == 202, resp.text
    view = engine.wait(resp.json()["id"])
    assert view["status"] == "succeeded", view
    steps = view["steps"]
    collects = [s for s in steps.values() if s["tool"] == "mock.agent"]
    assert len(collects) == 3 and all(not s["depends_on"] for s in collects)  # fan-out
    joins = [s for s in steps.values() if s["tool"] == "llm.generate"]
    assert len(joins) == 1 and len(joins[0]["depends_on"]) == 3  # join
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps.values())
    summary = engine.data_dir / "sandbox" / "default" / "summary.md"
    assert summary.exists() and "offline" in summary.read_text().lower()


def test_direct_plan_runs_over_http_with_retry_and_references(
    engine: Engine, tmp_path: Path
) -> None:
    resp = _submit(engine, {"plan": PLAN_YAML, "inputs": {"who": "Baton"}})
    assert resp.status_code == 202, resp.text
    view = engine.wait(resp.json()["id"])
    assert view["status"] == "succeeded", view
    assert view["outputs"] == {"greeting": "Hello Ada and Grace, from Baton"}
    assert view["steps"]["fetch_b"]["attempts"] == 2
    history = engine.http.get(f"{engine.url}/v1/executions/{view['id']}/events").json()["items"]
    types = [e["type"] for e in history]
    assert types[:2] == [
        "execution.requested",
        "execution.started",
    ]  # a direct plan skips the planner
    assert view["planner"] == "direct"
    assert types[-1] == "execution.succeeded"
    assert types.count("execution.step_failed") == 1
    assert [e["seq"] for e in history] == sorted(e["seq"] for e in history)


def test_cli_runs_a_plan_file_and_a_request_and_shows_progress(
    engine: Engine, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN_YAML)
    done = engine.cli("run", "--plan", str(plan), "--input", "who=CLI")
    assert done.returncode == 0, done.stderr
    assert "Hello Ada and Grace, from CLI" in done.stdout
    assert "▶ fetch_b" in done.stdout and "will retry" in done.stdout
    done = engine.cli("run", "collect weather for paris and rome, then summarise them")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "succeeded" in done.stdout


def test_cli_reports_failure_with_reason_and_nonzero_exit(engine: Engine, tmp_path: Path) -> None:
    plan = tmp_path / "fail.json"
    plan.write_text(json.dumps(retried_agent("flaky", 2, 0.01, fail_times=9)))
    done = engine.cli("run", "--plan", str(plan))
    assert done.returncode == 1
    assert "failed" in done.stderr and "flaky" in done.stderr


def test_cli_plan_prints_the_plan_without_running_it(engine: Engine) -> None:
    before = len(engine.http.get(f"{engine.url}/v1/executions?limit=500").json()["items"])
    done = engine.cli("plan", DEMO)
    assert done.returncode == 0, done.stderr
    assert "summarise" in done.stdout and "llm.generate" in done.stdout
    assert len(engine.http.get(f"{engine.url}/v1/executions?limit=500").json()["items"]) == before


def _count_intake(engine: Engine) -> int:
    url = engine.runtime()["database_url"]
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM gateway_events").fetchone()[0])


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ('{"request": "x",', 400, "malformed JSON"),
        (
            {
                "plan": {
                    "steps": [
                        {"id": "a", "tool": "mock.agent", "depends_on": ["b"]},
                        {"id": "b", "tool": "mock.agent", "depends_on": ["a"]},
                    ]
                }
            },
            422,
            "cycle",
        ),
        (
            {"plan": {"steps": [{"id": "a", "tool": "mock.agnet"}]}},
            422,
            "step 'a', tool: unknown tool 'mock.agnet' (did you mean 'mock.agent'?)",
        ),
        (
            {
                "plan": {
                    "steps": [
                        {
                            "id": "a",
                            "tool": "llm.generate",
                            "input": {"prompt": "${steps.nope.output.text}"},
                        }
                    ]
                }
            },
            422,
            "refers to unknown step 'nope'",
        ),
        (
            {"plan": {"steps": [{"id": "a", "tool": "time.sleep", "input": {"seconds": "soon"}}]}},
            422,
            "step 'a', input.seconds: 'soon' is not of type 'number'",
        ),
        ({"plan": {"steps": []}}, 422, "steps"),
        ({"request": "do it", "plan": {"steps": []}}, 422, "exactly one of"),
        ({"plan": "steps: [unclosed"}, 422, "neither JSON nor YAML"),
        ({"request": "x", "inputz": {}}, 422, "inputz"),
    ],
)
def test_bad_input_gets_a_precise_4xx_and_stores_nothing(
    engine: Engine, body: object, status: int, reason: str
) -> None:
    before = _count_intake(engine)
    content = body if isinstance(body, str) else json.dumps(body)
    resp = engine.http.post(
        f"{engine.url}/v1/executions", content=content, headers={"content-type": "application/json"}
    )
    assert resp.status_code == status, resp.text
    assert reason in resp.json()["detail"]
    assert _count_intake(engine) == before


def test_unknown_execution_is_a_404_everywhere(engine: Engine) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/stream"),
        ("POST", "/cancel"),
        ("POST", "/pause"),
    ]:
        resp = engine.http.request(method, f"{engine.url}/v1/executions/{missing}{path}")
        assert resp.status_code == 404 and str(missing) in resp.json()["detail"], (path, resp.text)
    assert engine.http.get(f"{engine.url}/v1/executions/not-a-uuid").status_code == 422


def test_same_idempotency_key_returns_the_same_execution(engine: Engine) -> None:
    key = f"k-{uuid.uuid4()}"
    first = _submit(engine, {"request": "collect reports for api"}, **{"Idempotency-Key": key})
    again = _submit(engine, {"request": "collect reports for api"}, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["created"] is False
    other = _submit(engine, {"request": "something else"}, **{"Idempotency-Key": key})
    assert other.status_code == 409 and "already used" in other.json()["detail"]


SLOW_CHAIN = {
    "steps": [
        {
            "id": "one",
            "tool": "time.sleep",
            "input": {"seconds": 0.6},
            "compensate": {"tool": "mock.agent", "input": {"task": "undo one"}},
        },
        {"id": "two", "tool": "time.sleep", "input": {"seconds": 0.6}, "depends_on": ["one"]},
        {"id": "three", "tool": "time.sleep", "input": {"seconds": 0.6}, "depends_on": ["two"]},
    ]
}


def _sse_types(
    engine: Engine, execution_id: str, last_event_id: str | None = None
) -> list[tuple[str, str]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    seen: list[tuple[str, str]] = []
    with engine.http.stream(
        "GET", f"{engine.url}/v1/executions/{execution_id}/stream", headers=headers, timeout=30
    ) as r:
        event_id, event = "", ""
        for line in r.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif not line and event:
                seen.append((event_id, event))
                if event == "end":
                    break
                event = ""
    return seen


def test_pause_and_resume_are_observable_in_the_api_and_the_stream(engine: Engine) -> None:
    eid = _submit(engine, {"plan": SLOW_CHAIN}).json()["id"]
    engine.wait(eid, until=("running",))
    assert (
        engine.http.post(
            f"{engine.url}/v1/executions/{eid}/pause", json={"reason": "lunch"}
        ).status_code
        == 202
    )
    view = engine.wait(eid, until=("paused",))
    time.sleep(1.0)  # step one finishes; two must not start while paused
    view = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()
    assert view["status"] == "paused" and view["steps"]["one"]["status"] == "succeeded"
    assert view["steps"]["two"]["status"] == "pending"
    assert engine.http.post(f"{engine.url}/v1/executions/{eid}/resume").status_code == 202
    assert engine.wait(eid)["status"] == "succeeded"
    events = _sse_types(engine, eid)
    types = [t for _, t in events]
    assert (
        types.index("execution.paused")
        < types.index("execution.resumed")
        < types.index("execution.succeeded")
    )
    assert types[-1] == "end"
    resumed_from = events[2][0]  # resumable: only what came after Last-Event-ID
    assert [t for _, t in _sse_types(engine, eid, resumed_from)] == types[3:]
    assert engine.http.post(f"{engine.url}/v1/executions/{eid}/pause").status_code == 409


def test_cancel_stops_running_steps_and_compensates(engine: Engine) -> None:
    # "two" runs long enough that the cancel lands while it runs, however busy the machine.
    plan = copy.deepcopy(SLOW_CHAIN)
    plan["steps"][1]["input"]["seconds"] = 30
    eid = _submit(engine, {"plan": plan}).json()["id"]
    deadline = time.monotonic() + 20
    while (
        engine.http.get(f"{engine.url}/v1/executions/{eid}")
        .json()["steps"]
        .get("two", {})
        .get("status")
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = engine.cli("cancel", eid, "--reason", "changed my mind")
    assert done.returncode == 0, done.stderr
    view = engine.wait(eid)
    assert view["status"] == "cancelled" and view["error"] == "changed my mind"
    assert view["steps"]["two"]["status"] == "cancelled"
    assert view["steps"]["three"]["status"] == "skipped"
    assert view["steps"]["one"]["compensation"] == "compensated"
    types = [t for _, t in _sse_types(engine, eid)]
    assert "execution.cancelling" in types and "execution.compensation_started" in types


def test_replay_prints_the_timeline_and_state_at_any_event(engine: Engine) -> None:
    eid = _submit(engine, {"plan": PLAN_YAML, "inputs": {"who": "replay"}}).json()["id"]
    engine.wait(eid)
    timeline = engine.cli("replay", eid)
    assert timeline.returncode == 0, timeline.stderr
    lines = timeline.stdout.strip().splitlines()
    assert "execution.requested" in lines[0] and "execution.succeeded" in lines[-1]
    at3 = engine.cli("replay", eid, "--at", "3", "--json")
    state = json.loads(at3.stdout)
    assert state["status"] == "running" and state["events"] == 3
    bad = engine.cli("replay", eid, "--at", "999")
    assert bad.returncode == 2 and "--at takes 1…" in bad.stderr


def _views(engine: Engine) -> tuple[list, list]:
    with psycopg.connect(engine.runtime()["database_url"]) as conn:
        views = conn.execute("SELECT id, status, view FROM executions ORDER BY id").fetchall()
        history = conn.execute(
            "SELECT execution_id, event_id, type, data FROM execution_events ORDER BY seq"
        ).fetchall()
    return views, history


def test_rebuilding_the_projections_gives_identical_views(engine: Engine) -> None:
    for _ in range(3):
        engine.wait(_submit(engine, {"plan": PLAN_YAML, "inputs": {"who": "x"}}).json()["id"])
    time.sleep(0.5)  # let the projector settle
    before = _views(engine)
    done = engine.cli("projections", "rebuild")
    assert done.returncode == 0, done.stderr
    assert "rebuilt the read models" in done.stdout
    after = _views(engine)
    assert len(after[0]) >= 3
    assert after == before
    # the live projector carries on from the rebuilt views (its remembered ones are dropped)
    eid = _submit(engine, {"plan": PLAN_YAML, "inputs": {"who": "after"}}).json()["id"]
    assert engine.wait(eid)["outputs"] == {"greeting": "Hello Ada and Grace, from after"}
    time.sleep(0.5)
    live = _views(engine)
    assert engine.cli("projections", "rebuild").returncode == 0
    assert _views(engine) == live


def test_batch_submission_records_all_in_one_call_and_names_the_bad_item(engine: Engine) -> None:
    plan = {"steps": [{"id": "a", "tool": "mock.agent"}]}
    resp = engine.http.post(
        f"{engine.url}/v1/executions/batch",
        json={"items": [{"plan": plan}, {"request": "collect reports for api"}]},
    )
    assert resp.status_code == 202, resp.text
    ids = [i["id"] for i in resp.json()["items"]]
    assert [engine.wait(i)["status"] for i in ids] == ["succeeded", "succeeded"]
    before = _count_intake(engine)
    bad = engine.http.post(
        f"{engine.url}/v1/executions/batch",
        json={"items": [{"plan": plan}, {"plan": {"steps": [{"id": "x", "tool": "nope"}]}}]},
    )
    assert bad.status_code == 422 and "items.1.tool" in bad.text
    assert _count_intake(engine) == before  # all or nothing


def test_a_malformed_message_on_the_bus_is_parked_and_listed_with_its_reason(
    engine: Engine,
) -> None:
    import asyncio

    import nats

    async def publish() -> None:
        nc = await nats.connect(**engine.nats())
        await nc.jetstream().publish(
            "baton.default.task.finished", b"{oops", headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )
        await nc.close()

    asyncio.run(publish())
    deadline = time.monotonic() + 20
    while True:
        listed = engine.cli("deadletters")
        if "not JSON" in listed.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed.returncode == 0 and "executor" in listed.stdout and "not JSON" in listed.stdout
    # the engine keeps working
    eid = _submit(engine, {"plan": {"steps": [{"id": "a", "tool": "mock.agent"}]}}).json()["id"]
    assert engine.wait(eid)["status"] == "succeeded"


def test_list_filters_by_status_and_pages_newest_first(engine: Engine) -> None:
    ids = [
        _submit(engine, {"plan": {"steps": [{"id": "a", "tool": "mock.agent"}]}}).json()["id"]
        for _ in range(3)
    ]
    for i in ids:
        engine.wait(i)
    page = engine.http.get(
        f"{engine.url}/v1/executions", params={"status": "succeeded", "limit": 2}
    ).json()
    assert [i["id"] for i in page["items"]] == ids[::-1][:2]
    assert all(i["status"] == "succeeded" for i in page["items"]) and page["next_before"]
    rest = engine.http.get(
        f"{engine.url}/v1/executions",
        params={"status": "succeeded", "limit": 2, "before": page["next_before"]},
    ).json()
    assert rest["items"][0]["id"] == ids[0]
    assert (
        engine.http.get(f"{engine.url}/v1/executions", params={"status": "bogus"}).status_code
        == 422
    )
    assert "/v1/executions" in engine.http.get(f"{engine.url}/openapi.json").json()["paths"]


def test_a_second_baton_up_on_the_same_port_says_so(engine: Engine) -> None:
    done = engine.cli("up", timeout=60)
    assert done.returncode == 2
    assert "is in use" in done.stderr and "Traceback" not in done.stderr


def test_rebuild_while_the_projector_is_busy_neither_deadlocks_nor_loses_events(
    engine: Engine,
) -> None:
    plan = {
        "steps": [
            {"id": "a", "tool": "mock.agent"},
            {"id": "b", "tool": "mock.agent", "depends_on": ["a"]},
        ]
    }
    resp = engine.http.post(
        f"{engine.url}/v1/executions/batch", json={"items": [{"plan": plan}] * 300}, timeout=60
    )
    ids = [i["id"] for i in resp.json()["items"]]
    for _ in range(3):  # rebuild in the thick of it
        done = engine.cli("projections", "rebuild")
        assert done.returncode == 0, done.stderr
    assert {engine.wait(i, timeout=120)["status"] for i in ids} == {"succeeded"}
    time.sleep(1.0)
    live = _views(engine)
    assert engine.cli("projections", "rebuild").returncode == 0
    assert _views(engine) == live
