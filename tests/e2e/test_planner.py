"""The offline planner through the gateway and the CLI: plans explain themselves, unclear
requests are refused with what was understood (an execution asks the person: test_questions.py),
and a planned file task runs end to end."""

from __future__ import annotations

import json
import time
from typing import Any as Engine  # the fixture's type lives in conftest.py

REQUEST = "read notes.md and summarise it"


def test_a_draft_says_why_each_step_is_there(engine: Engine) -> None:
    resp = engine.http.post(f"{engine.url}/v1/plans/draft", json={"request": REQUEST})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [s["tool"] for s in body["plan"]["steps"]] == ["files.read", "llm.generate"]
    why = {e["step"]: e for e in body["explanation"]}
    assert set(why) == {s["id"] for s in body["plan"]["steps"]}
    read, summary = body["plan"]["steps"]
    assert why[read["id"]]["words"] == ["read"] and "files.read" in why[read["id"]]["why"]
    assert "summarise" in why[summary["id"]]["words"]


def test_an_unclear_request_is_refused_with_a_suggestion(engine: Engine) -> None:
    resp = engine.http.post(
        f"{engine.url}/v1/plans/draft", json={"request": "read notes.md and then frobnicate it"}
    )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert "cannot plan" in body["detail"] and body["suggestion"]
    assert body["understood"] == ["'read notes.md' → files.read"]
    assert "frobnicate" in body["not_understood"][0]
    done = engine.cli("plan", "zzz qqq")
    assert done.returncode != 0 and "Suggestion" in done.stderr and "Traceback" not in done.stderr
    run = engine.http.post(f"{engine.url}/v1/executions", json={"request": "zzz qqq"})
    view = engine.wait(run.json()["id"], until=("waiting", "failed"))
    assert view["status"] == "waiting" and view["question"]["suggestion"] and not view["steps"]
    url = f"{engine.url}/v1/approvals/{view['question']['id']}/decision"
    while (declined := engine.http.post(url, json={"decision": "reject"})).status_code == 404:
        time.sleep(0.1)  # the question's gate is being opened
    assert declined.status_code == 200, declined.text
    assert engine.wait(run.json()["id"])["status"] == "failed"


def test_cli_plan_explains_itself_and_json_carries_the_explanation(engine: Engine) -> None:
    done = engine.cli("plan", "merge a.txt and b.txt into c.txt")
    assert done.returncode == 0, done.stderr
    assert "why:" in done.stdout and "files.write" in done.stdout and "c.txt" in done.stdout
    machine = engine.cli("plan", REQUEST, "--json")
    data = json.loads(machine.stdout)
    assert data["plan"]["steps"] and len(data["explanation"]) == len(data["plan"]["steps"])


def test_a_planned_merge_runs_and_writes_the_file(engine: Engine) -> None:
    for name, text in (("a.txt", "alpha"), ("b.txt", "beta")):
        resp = engine.http.post(
            f"{engine.url}/v1/executions",
            json={"request": f"write '{text}' to {name}"},
        )
        assert engine.wait(resp.json()["id"])["status"] == "succeeded"
    resp = engine.http.post(
        f"{engine.url}/v1/executions", json={"request": "merge a.txt and b.txt into c.txt"}
    )
    view = engine.wait(resp.json()["id"])
    assert view["status"] == "succeeded", view
    check = engine.http.post(f"{engine.url}/v1/executions", json={"request": "read c.txt"})
    read = engine.wait(check.json()["id"])
    assert read["steps"]["read_c"]["output"]["content"] == "alpha\n\nbeta"
