"""Saved plans on the engine as processes (gateway, planner, executor, workers, projector) on real
NATS and PostgreSQL: push versions and diff them, an identical push is a no-op, an A/B split of
70/30 over 200 executions lands in its binomial band and is sticky per key, rollback takes
effect for new executions only, per-version figures survive a projection rebuild, bad input is
a 422 or a 404, and the CLI.

Nothing here asserts timings."""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest

pytestmark = pytest.mark.e2e


def template(id_: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"id": id_, "tool": "text.template", "input": {"template": text}, **fields}


V1 = {
    "steps": [
        {"id": "fetch", "tool": "mock.agent", "input": {"task": "fetch", "output": "data"}},
        template("shape", "got ${steps.fetch.output.result}", depends_on=["fetch"]),
        template("old", "bye"),
    ]
}
V2 = {
    "steps": [
        {
            "id": "fetch",
            "tool": "mock.agent",
            "input": {"task": "fetch", "output": "more data"},
            "retry": {"max_attempts": 5},
        },
        template("format", "got ${steps.fetch.output.result}", depends_on=["fetch"]),
        template("new", "hello", requires_approval=False, depends_on=["format"]),
    ]
}


def api(engine: Engine, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    resp = engine.http.request(method, f"{engine.url}{path}", **kw)
    assert resp.status_code == status, resp.text
    return resp.json()


def push(engine: Engine, name: str, plan: dict[str, Any], status: int = 201, **kw: Any) -> Any:
    return api(engine, "POST", f"/v1/plans/{name}/versions", status, json={"plan": plan, **kw})


def run(engine: Engine, ref: dict[str, Any], **inputs: Any) -> str:
    body = {"plan_ref": ref, "inputs": inputs}
    return str(api(engine, "POST", "/v1/executions", 202, json=body)["id"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_push_two_versions_diff_them_and_an_identical_push_is_a_no_op(engine: Engine) -> None:
    name = unique("report")
    first = push(engine, name, V1, message="first cut")
    assert (first["version"], first["created"], first["current"]) == (1, True, 1)
    assert push(engine, name, V2, message="retry the fetch")["version"] == 2
    again = push(engine, name, V1, 200)
    assert (again["version"], again["created"]) == (1, False)  # nothing new recorded
    view = api(engine, "GET", f"/v1/plans/{name}")
    assert [v["version"] for v in view["versions"]] == [1, 2] and view["current_version"] == 1
    assert view["versions"][1]["message"] == "retry the fetch"
    assert view["versions"][0]["author"] and view["versions"][0]["content_hash"]
    assert name in [p["name"] for p in api(engine, "GET", "/v1/plans")["items"]]
    assert api(engine, "GET", f"/v1/plans/{name}/versions/2")["plan"]["steps"][1]["id"] == "format"

    diff = api(engine, "GET", f"/v1/plans/{name}/diff", params={"from": 1, "to": 2})
    assert diff["added"] == [{"step": "new", "tool": "text.template"}]
    assert diff["removed"] == [{"step": "old", "tool": "text.template"}]
    assert [(r["from"], r["to"]) for r in diff["renamed"]] == [("shape", "format")]
    [fetch] = diff["changed"]
    changes = {(c["field"], c["path"]): (c["from"], c["to"]) for c in fetch["changes"]}
    assert changes == {
        ("input", "input.output"): ("data", "more data"),
        ("retry", "retry.max_attempts"): (3, 5),
    }

    cli = engine.cli("plans", "diff", name, "1", "2")
    assert cli.returncode == 0, cli.stderr
    assert "+ new" in cli.stdout and "- old" in cli.stdout and "shape → format" in cli.stdout
    assert "retry.max_attempts: 3 → 5" in cli.stdout


def test_bad_input_is_a_422_or_a_404(engine: Engine) -> None:
    name = unique("bad")
    bad = engine.http.post(
        f"{engine.url}/v1/plans/{name}/versions",
        json={"plan": {"steps": [{"id": "a", "tool": "no.such.tool"}]}},
    )
    assert bad.status_code == 422 and bad.json()["problems"][0]["step"] == "a", bad.text
    assert engine.http.get(f"{engine.url}/v1/plans/{name}").status_code == 404  # nothing stored
    push(engine, name, V1)
    push(engine, name, V2)
    for params in ({"from": 1, "to": 3}, {"from": 9, "to": 1}):
        resp = engine.http.get(f"{engine.url}/v1/plans/{name}/diff", params=params)
        assert resp.status_code == 404 and "no version" in resp.json()["detail"], resp.text
    assert engine.http.get(f"{engine.url}/v1/plans/{name}/versions/7").status_code == 404
    route = f"{engine.url}/v1/plans/{name}/routing"
    for split, reason in (
        ([{"version": 1, "weight": 60}, {"version": 2, "weight": 30}], "sum to 90"),
        ([{"version": 1, "weight": 70}, {"version": 5, "weight": 30}], "no version 5"),
    ):
        resp = engine.http.put(route, json={"split": split})
        assert resp.status_code == 422 and reason in resp.json()["detail"], resp.text
    assert (
        engine.http.post(f"{engine.url}/v1/plans/{name}/promote", json={"version": 4}).status_code
        == 404
    )
    assert engine.http.post(f"{engine.url}/v1/plans/{name}/rollback").status_code == 409
    missing = {"plan_ref": {"name": unique("nope")}}
    resp = engine.http.post(f"{engine.url}/v1/executions", json=missing)
    assert resp.status_code == 404 and "no saved plan" in resp.json()["detail"], resp.text
    pinned = {"plan_ref": {"name": name, "version": 9}}
    assert engine.http.post(f"{engine.url}/v1/executions", json=pinned).status_code == 404
    both = {"plan_ref": {"name": name}, "request": "say hi"}
    assert engine.http.post(f"{engine.url}/v1/executions", json=both).status_code == 422


def test_ab_split_70_30_lands_in_its_band_is_sticky_and_figures_survive_a_rebuild(
    engine: Engine,
) -> None:
    name = unique("ab")
    push(engine, name, V1)
    push(engine, name, {"steps": [template("only", "v2 for ${input.user}")]})
    split = [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]
    api(engine, "PUT", f"/v1/plans/{name}/routing", json={"split": split, "sticky_key": "user"})
    items = [{"plan_ref": {"name": name}, "inputs": {"user": f"user-{i}"}} for i in range(200)]
    ids = [
        i["id"]
        for i in api(engine, "POST", "/v1/executions/batch", 202, json={"items": items})["items"]
    ]
    views = [engine.wait(i, timeout=180) for i in ids]
    assert all(v["status"] == "succeeded" for v in views)
    versions = [v["plan_ref"]["version"] for v in views]
    assert {v["plan_ref"]["chosen_by"] for v in views} == {"split"}
    # 70 % of 200 is 140; the binomial standard deviation is √(200·0.7·0.3) ≈ 6.5: 4 of them either side
    band = 4 * math.sqrt(200 * 0.7 * 0.3)
    assert abs(versions.count(1) - 140) <= band, versions.count(1)
    # sticky: the same user lands on the same version again
    again = [run(engine, {"name": name}, user=f"user-{i}") for i in range(20)]
    assert [engine.wait(i)["plan_ref"]["version"] for i in again] == versions[:20]
    # a pinned version wins over the split
    pinned = engine.wait(run(engine, {"name": name, "version": 2}, user="user-0"))
    assert pinned["plan_ref"] == {"name": name, "version": 2, "chosen_by": "pinned"}

    figures = wait_for_figures(engine, name, 221)
    assert figures[1]["success_rate"] == figures[2]["success_rate"] == 1.0
    assert figures[1]["tool_calls"] == 3 * figures[1]["executions"]
    assert figures[2]["tool_calls"] == figures[2]["executions"]
    rebuilt = engine.cli("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert version_figures(engine, name) == figures


def wait_for_figures(engine: Engine, name: str, finished: int) -> dict[int, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        figures = version_figures(engine, name)
        if sum(f["finished"] for f in figures.values()) >= finished:
            return figures
        time.sleep(0.2)
    raise AssertionError(f"figures of {name}: {figures}")


def version_figures(engine: Engine, name: str) -> dict[int, Any]:
    view = api(engine, "GET", f"/v1/plans/{name}")
    return {v["version"]: v["figures"] for v in view["versions"]}


def test_rollback_takes_effect_for_new_executions_only(engine: Engine) -> None:
    name = unique("deploy")
    push(engine, name, {"steps": [template("v1", "one")]})
    slow = {"id": "v2", "tool": "mock.agent", "input": {"task": "slow", "latency_ms": 3000}}
    assert push(engine, name, {"steps": [slow]}, promote=True)["current"] == 2
    running = run(engine, {"name": name})
    view = engine.wait(running, until=("running",))
    assert view["plan_ref"]["version"] == 2
    rolled = api(engine, "POST", f"/v1/plans/{name}/rollback")
    assert rolled["current_version"] == 1
    after = engine.wait(run(engine, {"name": name}))
    assert after["plan_ref"]["version"] == 1 and list(after["steps"]) == ["v1"]
    done = engine.wait(running)  # the running one keeps the version it started with
    assert done["status"] == "succeeded" and done["plan_ref"]["version"] == 2
    assert list(done["steps"]) == ["v2"]
    # nothing earlier to go back to now; promote again, then the CLI rolls back
    assert engine.http.post(f"{engine.url}/v1/plans/{name}/rollback").status_code == 409
    assert (
        api(engine, "POST", f"/v1/plans/{name}/promote", json={"version": 2})["current_version"]
        == 2
    )
    cli = engine.cli("plans", "rollback", name)
    assert cli.returncode == 0 and "current version: 1" in cli.stdout, (cli.stdout, cli.stderr)


def test_the_cli_pushes_a_file_lists_shows_routes_and_says_what_is_wrong(
    engine: Engine, tmp_path: Path
) -> None:
    name = unique("cli")
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("steps:\n  - id: hi\n    tool: text.template\n    input: {template: hi}\n")
    pushed = engine.cli("plans", "push", name, str(plan_file), "-m", "from a file")
    assert pushed.returncode == 0 and "version 1" in pushed.stdout, (pushed.stdout, pushed.stderr)
    same = engine.cli("plans", "push", name, str(plan_file))
    assert same.returncode == 0 and "unchanged" in same.stdout, same.stdout
    json_file = tmp_path / "plan.json"
    json_file.write_text(json.dumps({"steps": [template("hi", "hello")]}))
    assert engine.cli("plans", "push", name, str(json_file)).returncode == 0
    listed = engine.cli("plans", "list")
    assert listed.returncode == 0 and name in listed.stdout
    routed = engine.cli("plans", "route", name, "1=50", "2=50", "--sticky-key", "user")
    assert routed.returncode == 0, routed.stderr
    shown = engine.cli("plans", "show", name)
    assert shown.returncode == 0 and "from a file" in shown.stdout and "50%" in shown.stdout
    promoted = engine.cli("plans", "promote", name, "2")
    assert promoted.returncode == 0 and "current version: 2" in promoted.stdout
    ran = engine.cli("run", "--saved", f"{name}@1", "--no-follow")
    assert ran.returncode == 0, ran.stderr
    assert engine.wait(ran.stdout.strip())["plan_ref"]["version"] == 1
    assert engine.cli("run", "--saved", "bad name!").returncode != 0
    bad = engine.cli("plans", "route", name, "1=50", "2=40")
    assert bad.returncode != 0 and "sum to 90" in bad.stderr and "Traceback" not in bad.stderr
    missing = engine.cli("plans", "show", unique("nope"))
    assert missing.returncode != 0 and "no saved plan" in missing.stderr
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("steps:\n  - id: a\n    tool: no.such\n")
    invalid = engine.cli("plans", "push", name, str(bad_file))
    assert invalid.returncode != 0 and "no.such" in invalid.stderr


def test_a_schedule_starts_a_saved_plan_by_name(engine: Engine) -> None:
    name = unique("nightly")
    push(engine, name, {"steps": [template("v1", "one")]})
    push(engine, name, {"steps": [template("v2", "two")]})
    once = {"name": name, "at": "2030-01-01T00:00:00Z", "plan_ref": f"{name}@2"}
    made = api(engine, "POST", "/v1/schedules", 201, json=once)
    api(engine, "POST", f"/v1/schedules/{made['id']}/trigger-now", 202)
    deadline = time.monotonic() + 60
    items: list[Any] = []
    while not items and time.monotonic() < deadline:
        items = api(engine, "GET", "/v1/executions", params={"schedule": made["id"]})["items"]
        time.sleep(0.2)
    assert items, "the schedule started nothing"
    view = engine.wait(items[0]["id"])
    assert view["status"] == "succeeded" and list(view["steps"]) == ["v2"]
    assert view["plan_ref"] == {"name": name, "version": 2, "chosen_by": "pinned"}


def started_by(engine: Engine, **source: str) -> dict[str, Any]:
    """The one execution a schedule or trigger started (``schedule=`` / ``trigger=``), ended."""
    deadline = time.monotonic() + 60
    items: list[Any] = []
    while not items and time.monotonic() < deadline:
        items = api(engine, "GET", "/v1/executions", params=source)["items"]
        time.sleep(0.2)
    assert len(items) == 1, f"{source} started {len(items)} executions"
    return dict(engine.wait(items[0]["id"]))


def test_a_webhook_endpoint_and_a_trigger_start_saved_plans(engine: Engine) -> None:
    """A delivery runs the endpoint's saved plan (its current version; the endpoint made with
    the CLI); that execution's end fires a trigger whose action is another saved plan, pinned:
    each view records its version."""
    hooked, follow = unique("hooked"), unique("follow")
    push(engine, hooked, {"steps": [template("h1", "one ${input.who}")]})
    push(engine, hooked, {"steps": [template("h2", "two ${input.who}")]})  # not promoted
    push(engine, follow, {"steps": [template("f1", "one")]})
    push(engine, follow, {"steps": [template("f2", "after ${input.source}")]})
    made = engine.cli(
        "webhooks", "endpoints", "create", hooked, "--scheme", "none", "--allow-unsigned",
        "--saved", hooked, "--input", "who=${payload.who}", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    endpoint = json.loads(made.stdout)
    on_end = {
        "name": follow,
        "filter": {"type": "execution.succeeded", "plan": hooked},
        "plan_ref": f"{follow}@2",
        "inputs": {"source": "${event.execution_id}"},
    }
    trigger = api(engine, "POST", "/v1/triggers", 201, json=on_end)

    sent = httpx.post(endpoint["url"], json={"who": "ada"}, timeout=30)
    assert sent.status_code == 202, sent.text
    first = engine.wait(sent.json()["execution_id"])
    assert first["status"] == "succeeded" and list(first["steps"]) == ["h1"]
    assert first["plan_ref"] == {"name": hooked, "version": 1, "chosen_by": "current"}
    assert first["steps"]["h1"]["output"]["text"] == "one ada"
    then = started_by(engine, trigger=trigger["id"])
    assert then["status"] == "succeeded" and list(then["steps"]) == ["f2"]
    assert then["plan_ref"] == {"name": follow, "version": 2, "chosen_by": "pinned"}
    assert then["steps"]["f2"]["output"]["text"] == f"after {first['id']}"


@pytest.mark.parametrize("ref", ["missing", "known@9"])
def test_an_unknown_saved_plan_is_refused_where_it_is_named(engine: Engine, ref: str) -> None:
    """Schedules (created, by the API or the CLI, or changed), triggers and webhook endpoints: a
    404 that names the plan or version, and nothing is stored."""
    known = unique("known")
    push(engine, known, {"steps": [template("k", "k")]})
    name, ref = unique("refused"), ref.replace("missing", unique("missing")).replace("known", known)
    reason = "no saved plan" if "@" not in ref else "no version 9"
    made = {
        "/v1/schedules": {"name": name, "cron": "0 3 * * *", "plan_ref": ref},
        "/v1/triggers": {"name": name, "filter": {"type": "plan.failed"}, "plan_ref": ref},
        "/v1/webhooks/endpoints": {"name": name, "action": {"plan_ref": ref}},
    }
    for path, body in made.items():
        resp = engine.http.post(f"{engine.url}{path}", json=body)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["detail"].startswith("plan_ref: ") and reason in resp.text, resp.text
        assert name not in {i["name"] for i in api(engine, "GET", path)["items"]}
    by_cli = engine.cli("schedules", "create", name, "--cron", "0 3 * * *", "--saved", ref)
    assert by_cli.returncode != 0 and reason in by_cli.stderr, by_cli.stderr
    schedule = {"name": name, "cron": "0 3 * * *", "plan_ref": known}
    sid = api(engine, "POST", "/v1/schedules", 201, json=schedule)["id"]
    changed = engine.http.patch(f"{engine.url}/v1/schedules/{sid}", json={"plan_ref": ref})
    assert changed.status_code == 404 and reason in changed.text, changed.text
    assert api(engine, "GET", f"/v1/schedules/{sid}")["definition"]["plan_ref"] == {"name": known}
    api(engine, "DELETE", f"/v1/schedules/{sid}")
