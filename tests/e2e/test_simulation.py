"""Simulated executions on the engine as processes: dry runs send nothing, mocks rehearse
retries and compensation in the real workers, bad profiles are refused."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
import yaml
from baton_common.testing import Recorder

pytestmark = pytest.mark.e2e


class CountingServer(Recorder):
    """Counts the calls that reach it, whatever their method; serves from the moment it is made."""

    def __init__(self) -> None:
        super().__init__("")
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def requests(self) -> int:
        return len(self.calls)


def _plan(url: str) -> dict[str, Any]:
    return {
        "steps": [
            {"id": "look", "tool": "mock.agent", "input": {"task": "find the order", "output": "o-17"}},
            {"id": "post", "tool": "http.request", "depends_on": ["look"],
             "input": {"url": f"{url}/orders", "method": "POST",
                       "json": {"order": "${steps.look.output.result}"}},
             "compensate": {"tool": "http.request", "input": {"url": f"{url}/orders/1", "method": "DELETE"}}},
            {"id": "refund", "tool": "mock.critical", "depends_on": ["post"],
             "input": {"action": "refund", "amount": 5}},
        ]
    }  # fmt: skip


def _critical_calls(engine: Engine) -> int:
    tools = engine.http.get(f"{engine.url}/v1/metrics/summary").json()["by_tool"]
    return sum(int(t["steps"]) for t in tools if t["tool"] == "mock.critical")


def test_a_dry_run_sends_nothing_and_lists_every_call(engine: Engine) -> None:
    server = CountingServer()
    critical_before = _critical_calls(engine)
    try:
        r = engine.http.post(
            f"{engine.url}/v1/executions", json={"plan": _plan(server.url), "dry_run": True}
        )
        assert r.status_code == 202, r.text
        view = engine.wait(r.json()["id"])
        assert view["status"] == "succeeded", view.get("error")
        assert server.requests == 0  # the POST was not sent
        sim = view["simulation"]
        assert sim["mode"] == "dry_run"
        calls = {c["step_id"]: c for c in sim["calls"]}
        assert calls["look"]["call"] == "real"  # a read runs for real
        assert calls["post"]["call"] == "simulated"
        assert calls["post"]["input"] == {
            "url": f"{server.url}/orders",
            "method": "POST",
            "json": {"order": "o-17"},
        }
        assert calls["refund"]["approval_skipped"] == "mock.critical is a critical tool"
        assert view["steps"]["refund"]["output"] == {"done": "refund", "calls": 0}
        events = engine.http.get(f"{engine.url}/v1/executions/{view['id']}/events").json()
        types = [e["type"] for e in events["items"]]
        assert (
            "approval.requested" not in types and "execution.step_approval_requested" not in types
        )
        [started] = [e for e in events["items"] if e["type"] == "execution.started"]
        assert started["data"]["simulation"]["mode"] == "dry_run"
        assert _critical_calls(engine) == critical_before  # rehearsals stay out of the figures
    finally:
        server.shutdown()


def test_the_cli_dry_run_prints_the_calls(engine: Engine, tmp_path: Path) -> None:
    server = CountingServer()
    try:
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump(_plan(server.url)))
        done = engine.cli("run", "--plan", str(plan), "--dry-run", "--quiet")
        assert done.returncode == 0, done.stderr
        assert "dry-run: 3 call(s), no side effects" in done.stdout
        assert f'post#1 http.request [simulated] {{"url": "{server.url}/orders"' in done.stdout
        assert server.requests == 0
    finally:
        server.shutdown()


def test_a_mock_profile_rehearses_retries_and_compensation(engine: Engine, tmp_path: Path) -> None:
    profile = {
        "seed": 1,
        "tools": {"mock.agent": {"latency": {"distribution": "normal", "mean_ms": 30, "stddev_ms": 10},
                                 "fail_first": 1, "output": {"result": "mocked"}}},
        "steps": {"refund": {"failure_rate": 1, "retryable": False, "error": "card declined"}},
    }  # fmt: skip
    plan = _plan("http://127.0.0.1:9")
    plan["steps"][0]["retry"] = {"max_attempts": 3, "backoff_s": 0.05}
    r = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan": plan, "mock_profile": profile}
    )
    assert r.status_code == 202, r.text
    view = engine.wait(r.json()["id"])
    assert view["status"] == "failed" and "card declined" in view["error"]
    assert view["simulation"]["mode"] == "mock"
    assert view["steps"]["look"]["attempts"] == 2  # failed once by the profile, then succeeded
    assert view["steps"]["look"]["output"] == {"result": "mocked"}
    assert view["steps"]["post"]["compensation"] == "compensated"  # rehearsed, nothing sent
    undo = [c for c in view["simulation"]["calls"] if c["kind"] == "compensate"]
    assert [(c["step_id"], c["input"]["method"]) for c in undo] == [("post", "DELETE")]
    # the CLI reads a YAML profile; an unknown tool is a clear error, not a traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools:\n  http.requets: {failure_rate: 0.5}\n")
    plan_file = tmp_path / "p.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    done = engine.cli("run", "--plan", str(plan_file), "--mock", str(bad))
    assert done.returncode == 2
    assert "422" in done.stderr and "unknown tool(s) 'http.requets'" in done.stderr
    assert "Traceback" not in done.stderr


def _recorded_plan(url: str) -> dict[str, Any]:
    return {
        "steps": [
            {"id": "a", "tool": "mock.agent", "input": {"task": "a", "output": "A"}},
            {"id": "b", "tool": "http.request", "depends_on": ["a"],
             "input": {"url": f"{url}/b", "method": "POST", "json": {"a": "${steps.a.output.result}"}}},
            {"id": "c", "tool": "text.template", "depends_on": ["b"],
             "input": {"template": "done {x}", "values": {"x": "${steps.a.output.result}"}}},
        ]
    }  # fmt: skip


def test_a_rerun_serves_the_recording_back_and_reports_divergence(
    engine: Engine, tmp_path: Path
) -> None:
    server = CountingServer()
    try:
        plan = _recorded_plan(server.url)
        r = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
        recorded = engine.wait(r.json()["id"])
        assert recorded["status"] == "succeeded" and server.requests == 1

        same = engine.cli("replay", recorded["id"], "--rerun")
        assert same.returncode == 0, same.stdout + same.stderr
        assert "no divergence" in same.stdout
        assert server.requests == 1  # the recorded POST was served back, not sent again

        changed = _recorded_plan(server.url)
        changed["steps"][1]["input"]["json"]["extra"] = 1  # b's input changes
        del changed["steps"][2]  # c is removed
        changed["steps"].append(
            {"id": "d", "tool": "text.template", "depends_on": ["b"], "input": {"template": "new"}}
        )
        plan_file = tmp_path / "changed.yaml"
        plan_file.write_text(yaml.safe_dump(changed))
        diff = engine.cli("replay", recorded["id"], "--rerun", "--plan", str(plan_file), "--json")
        assert diff.returncode == 1, diff.stdout + diff.stderr
        report = json.loads(diff.stdout)
        found = {(d["divergence"], d.get("step_id")) for d in report["divergences"]}
        assert found == {("input_differs", "b"), ("new_step", "d"), ("removed_step", "c")}
        [b] = [d for d in report["divergences"] if d.get("step_id") == "b"]
        assert b["recorded"]["input"]["json"] == {"a": "A"}
        assert b["input"]["json"] == {"a": "A", "extra": 1}
        assert server.requests == 1  # a call with no recording is simulated, never sent
        rerun = engine.http.get(f"{engine.url}/v1/executions/{report['rerun']}").json()
        assert rerun["simulation"]["mode"] == "replay"
        assert rerun["simulation"]["replay_of"] == recorded["id"]
        # the human-readable report says the same
        text = engine.cli("replay", recorded["id"], "--rerun", "--plan", str(plan_file))
        assert "3 divergence(s)" in text.stdout and "new step with no recording" in text.stdout
    finally:
        server.shutdown()


def test_another_workspace_cannot_replay_an_execution(engine: Engine) -> None:
    r = engine.http.post(
        f"{engine.url}/v1/executions",
        json={"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "a"}}]}},
    )
    mine = engine.wait(r.json()["id"])
    ws = engine.http.post(f"{engine.url}/v1/workspaces", json={"name": "replay-other"}).json()
    key = engine.http.post(
        f"{engine.url}/v1/workspaces/{ws['id']}/keys", json={"role": "owner", "name": "o"}
    ).json()["key"]
    other = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    resp = other.post(
        f"{engine.url}/v1/executions", json={"plan": mine["plan"], "replay_of": mine["id"]}
    )
    assert resp.status_code == 404, resp.text
    both = other.post(
        f"{engine.url}/v1/executions",
        json={"plan": mine["plan"], "dry_run": True, "mock_profile": {}, "replay_of": mine["id"]},
    )
    assert both.status_code in (404, 422)


def test_a_request_in_words_is_planned_then_dry_run_and_writes_no_file(engine: Engine) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}.md"
    words = f"collect incident reports for api and billing, summarise them and save the summary to {name}"
    r = engine.http.post(f"{engine.url}/v1/executions", json={"request": words, "dry_run": True})
    assert r.status_code == 202, r.text
    view = engine.wait(r.json()["id"])
    assert view["status"] == "succeeded", view.get("error")
    writes = [c for c in view["simulation"]["calls"] if c["tool"] == "files.write"]
    assert [w["call"] for w in writes] == ["simulated"] and writes[0]["input"]["path"] == name
    assert not list(engine.data_dir.rglob(name))  # nothing was written anywhere


def test_a_mock_profile_naming_a_step_the_drafted_plan_lacks_fails_with_the_reason(
    engine: Engine,
) -> None:
    body = {"request": "collect incident reports for api", "mock_profile": {"steps": {"nope": {}}}}
    r = engine.http.post(f"{engine.url}/v1/executions", json=body)
    assert r.status_code == 202, r.text  # the plan is drafted later: the executor checks
    view = engine.wait(r.json()["id"])
    assert view["status"] == "failed" and "'nope' that the plan does not have" in view["error"]


def test_rehearse_a_saved_version_on_recorded_executions(engine: Engine) -> None:
    server = CountingServer()
    try:
        name = f"rehearse-{uuid.uuid4().hex[:6]}"
        v1 = _recorded_plan(server.url)
        v2 = _recorded_plan(server.url)
        v2["steps"][2]["input"]["template"] = "finished {x}"  # c's input changes
        for plan in (v1, v2):
            r = engine.http.post(f"{engine.url}/v1/plans/{name}/versions", json={"plan": plan})
            assert r.status_code == 201, r.text
        ids = []
        for user in ("ann", "bob"):  # the current version (1) records two real runs
            body = {"plan_ref": {"name": name}, "inputs": {"user": user}}
            ids.append(engine.http.post(f"{engine.url}/v1/executions", json=body).json()["id"])
        assert all(engine.wait(i)["status"] == "succeeded" for i in ids)
        assert server.requests == 2

        same = engine.cli("rehearse", f"{name}@1", "--last", "2")
        assert same.returncode == 0, same.stdout + same.stderr
        assert f"{name}@1: 2 of 2 re-runs as recorded" in same.stdout
        changed = engine.cli("rehearse", f"{name}@2", "--last", "2", "--json")
        assert changed.returncode == 1, changed.stdout + changed.stderr
        report = json.loads(changed.stdout)
        assert report["diverged"] == 2
        assert {r["recorded"] for r in report["runs"]} == set(ids)
        for run in report["runs"]:
            assert [(d["divergence"], d["step_id"]) for d in run["divergences"]] == [
                ("input_differs", "c")
            ]
        one = engine.cli("replay", ids[0], "--rerun", "--plan", f"{name}@2")
        assert one.returncode == 1 and "step 'c': input differs" in one.stdout
        assert server.requests == 2  # rehearsals sent nothing
        # the rehearsals are not runs of the versions: the figures count the two real runs
        versions = engine.http.get(f"{engine.url}/v1/plans/{name}").json()["versions"]
        figures = {v["version"]: v["figures"] for v in versions}
        assert figures[1]["executions"] == 2 and figures[2]["executions"] == 0, figures
        # the gate on promotion: version 2 diverges and is refused; a version 3 that only
        # changes a timeout behaves as recorded and is promoted
        refused = engine.cli("plans", "promote", name, "2", "--rehearse", "2")
        assert refused.returncode == 1 and "not promoted" in refused.stderr, refused.stderr
        v3 = _recorded_plan(server.url)
        v3["steps"][0]["timeout"] = 90
        r = engine.http.post(f"{engine.url}/v1/plans/{name}/versions", json={"plan": v3})
        assert r.status_code == 201, r.text
        promoted = engine.cli("plans", "promote", name, "3", "--rehearse", "2")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert engine.http.get(f"{engine.url}/v1/plans/{name}").json()["current_version"] == 3
        assert server.requests == 2
        bad = engine.cli("rehearse", "no-such-plan@1")
        assert bad.returncode == 2 and "no finished, recorded executions" in bad.stderr
    finally:
        server.shutdown()


def test_a_mock_neither_uses_nor_feeds_the_result_cache(engine: Engine) -> None:
    prompt = f"say hello {uuid.uuid4().hex[:6]}"
    plan = {"steps": [{"id": "ask", "tool": "llm.generate", "input": {"prompt": prompt}}]}
    profile = {"tools": {"llm.generate": {"output": {"text": "MOCKED", "model": "mock"}}}}

    views: list[Any] = []

    def run(**extra: Any) -> Any:
        body = {"plan": plan, **extra}
        view = engine.wait(engine.http.post(f"{engine.url}/v1/executions", json=body).json()["id"])
        assert view["status"] == "succeeded", view.get("error")
        views.append(view)
        return view["steps"]["ask"]["output"]["text"]

    mocked = run(mock_profile=profile)  # first: nothing cached yet, and nothing cached by it
    real = run()
    assert mocked == "MOCKED" and real != "MOCKED"
    assert run(mock_profile=profile) == "MOCKED"  # the real answer (now cached) is not served
    assert run() == real  # the real answer, from the cache or not, never the mock's
    # a step the cache answered is a recording too: re-running that execution does not diverge
    assert views[-1]["steps"]["ask"]["cached_from"] == f"{views[1]['id']}:ask"
    again = engine.cli("replay", views[-1]["id"], "--rerun")
    assert again.returncode == 0 and "no divergence" in again.stdout, again.stdout + again.stderr


def test_simulations_stay_out_of_the_business_totals(engine: Engine) -> None:
    def started() -> int:
        summary = engine.http.get(f"{engine.url}/v1/metrics/summary").json()
        return int(summary["totals"]["executions"]["started"])

    before = started()
    plan = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "count me?"}}]}
    for extra in ({"dry_run": True}, {"mock_profile": {"tools": {"mock.agent": {}}}}, {}):
        body = {"plan": plan, **extra}
        engine.wait(engine.http.post(f"{engine.url}/v1/executions", json=body).json()["id"])
    deadline = time.monotonic() + 30
    while (now := started()) == before and time.monotonic() < deadline:
        time.sleep(0.2)  # the projector follows the stream: the real run comes last in it
    assert now == before + 1  # the real run only
