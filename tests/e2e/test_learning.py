"""The learning engine on the engine as processes: a request reworded reuses the plan that
worked (local embeddings shipped in a wheel), after the planner was killed with SIGKILL and
restarted; a tool that keeps failing the same way is reported as a failure pattern."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest

pytestmark = pytest.mark.e2e


def _insights(engine: Engine) -> dict:
    resp = engine.http.get(f"{engine.url}/v1/insights")
    return dict(resp.json()) if resp.status_code == 200 else {}


def _until(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.2)


def test_a_reworded_request_reuses_a_learned_plan_after_the_planner_is_killed(
    engine: Engine,
) -> None:
    tag = uuid.uuid4().hex[:6]
    first = f"collect incident reports for api and billing, summarise them and save the summary to notes-{tag}.md"
    again = f"gather the incident reports of api and billing, write a summary of them and store it in notes-{tag}.md"
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"request": first}).json()["id"]
    view = engine.wait(eid)
    assert view["status"] == "succeeded" and view["planner"] == "offline", view
    _until(
        lambda: any(t["request"] == first for t in _insights(engine).get("plan_templates", [])),
        "the plan to be learned",
    )
    pid = engine.runtime()["pids"]["planner"]
    os.kill(pid, signal.SIGKILL)
    _until(
        lambda: engine.runtime()["pids"]["planner"] != pid and _insights(engine), "a new planner"
    )
    assert any(t["request"] == first for t in _insights(engine)["plan_templates"])

    eid2 = engine.http.post(f"{engine.url}/v1/executions", json={"request": again}).json()["id"]
    reused = engine.wait(eid2)
    assert reused["status"] == "succeeded" and reused["planner"] == "reused", reused
    assert _insights(engine)["plan_reuse"]["hits"] >= 1


def test_a_failure_pattern_is_detected_and_reported(engine: Engine) -> None:
    plan = {"steps": [{"id": "flaky", "tool": "mock.agent", "retry": {"max_attempts": 1},
                       "input": {"task": "flaky upstream", "fail_times": 9}}]}  # fmt: skip
    for _ in range(3):
        eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
        assert engine.wait(eid)["status"] == "failed"

    def reported() -> bool:
        patterns = _insights(engine).get("failure_patterns", [])
        return any(p["error_class"] == "mock.agent: scripted failure # of #" for p in patterns)

    _until(reported, "the failure pattern")
    out = engine.cli("insights")
    assert out.returncode == 0, out.stderr
    assert "mock.agent: mock.agent: scripted failure # of #" in out.stdout
    data = json.loads(engine.cli("insights", "--json").stdout)
    tools = {t["tool"]: t for t in data["tool_preference"]}
    assert tools["mock.agent"]["failed"] >= 3
