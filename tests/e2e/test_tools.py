"""Tools, plugins and the agent registry on the engine as processes, with two tool workers.

Its own engine (not the session one): an agents folder, BATON_WORKERS=2, a short hook timeout,
and a stand-in GitHub API. The plugin packages are pip-installed from the repository into this
environment and removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from baton_common.testing import LocalHandler, serving

from tests.e2e.conftest import Engine, retried_agent, start_engine, stop_engine

pytestmark = pytest.mark.e2e
BATON = str(Path(sys.executable).parent / "baton")
REPO = Path(__file__).resolve().parents[2]
TEST_PLUGINS = REPO / "tests" / "e2e" / "plugins" / "baton-test-plugins"
PIP = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]

WHOAMI = """
name: who.ami
description: Identify the worker process that answers.
keywords: [identify, whoami]
input_schema:
  type: object
  properties: {text: {type: string}}
  required: [text]
output_schema: {type: object}
implementation:
  python: baton_test_plugins.agent:whoami
"""


class FakeGitHub(LocalHandler):
    """Answers ``POST /repos/<o>/<r>/issues`` like GitHub; remembers what it was sent."""

    issues: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.body())
        self.issues.append(
            {"path": self.path, "body": body, "key": self.headers["Idempotency-Key"]}
        )
        answer = json.dumps(
            {"number": len(self.issues), "html_url": f"http://gh/{len(self.issues)}"}
        )
        self.answer(201, answer.encode(), {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def github() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def tools_engine(github: str) -> Iterator[Engine]:
    subprocess.run([*PIP, str(TEST_PLUGINS)], check=True)
    data_dir = Path(tempfile.mkdtemp(prefix="baton-e2e-tools-"))
    data_dir.chmod(0o755)
    agents = data_dir / "agents"
    agents.mkdir()
    (agents / "whoami.yaml").write_text(WHOAMI.replace("who.ami", "who.first"))
    env = {
        "BATON_WORKERS": "2",
        "BATON_AGENTS_DIR": str(agents),
        "BATON_HOOK_TIMEOUT": "1",
        "BATON_GITHUB_API_URL": github,
        "BATON_TOOL_SECRETS": "GITHUB_TOKEN",  # the example plugin reads it through ctx.secret
        "BATON_TEST_HOOK_LOG": str(data_dir / "hooks.jsonl"),
    }
    try:
        engine = start_engine(env, data_dir)
        yield engine
        stop_engine(engine)
    finally:
        uninstall = [sys.executable, "-m", "pip", "uninstall", "-y", "-q"]
        subprocess.run([*uninstall, "baton-test-plugins", "baton-example-github"], check=False)


def _run(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    resp = engine.http.post(f"{engine.url}/v1/executions", json=body)
    assert resp.status_code == 202, resp.text
    return engine.wait(resp.json()["id"])


def _tools(engine: Engine) -> dict[str, Any]:
    return dict(engine.http.get(f"{engine.url}/v1/tools").json())


def test_plugin_index_errors_are_clear(tmp_path: Path) -> None:
    """No engine needed: the index is read by the CLI itself."""
    index = tmp_path / "index.json"
    entry = {"name": "ghost", "description": "d", "version": "1", "capabilities": []}
    index.write_text(json.dumps({"plugins": [{**entry, "package": "./not-there"}]}))
    env = {**os.environ, "BATON_PLUGIN_INDEX": str(index)}

    def baton(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BATON, *args], env=env, capture_output=True, text=True, timeout=60)

    missing = baton("plugins", "install", "ghost", "--no-refresh")
    assert missing.returncode == 2 and "'./not-there' is not a plain distribution" in missing.stderr
    unknown = baton("plugins", "info", "nope")
    assert unknown.returncode == 2 and "no plugin 'nope' in the index" in unknown.stderr
    index.write_text("{not json")
    broken = baton("plugins", "search")
    assert broken.returncode == 2 and "is not JSON" in broken.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr + broken.stderr


def _scanned(engine: Engine, timeout: float = 90) -> dict[str, dict[str, Any]]:
    """The tools by name once the executor's first scan is in (it runs in a child process and
    may still be running when the gateway is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        names = {t["name"]: t for t in _tools(engine)["tools"]}
        if names.get("who.first", {}).get("origin") or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def test_a_new_agent_file_is_used_after_refresh_on_every_worker(tools_engine: Engine) -> None:
    e = tools_engine
    names = _scanned(e)
    assert names["who.first"]["origin"].endswith("agents/whoami.yaml")
    assert "who.ami" not in names
    (Path(e.env["BATON_AGENTS_DIR"]) / "who.yaml").write_text(WHOAMI)
    # Not there before the refresh: the gateway's validation refuses it.
    plan = {"steps": [{"id": "w", "tool": "who.ami", "input": {"text": "hi"}}]}
    assert e.http.post(f"{e.url}/v1/executions", json={"plan": plan}).status_code == 422
    done = e.cli("tools", "refresh")
    assert done.returncode == 0, done.stderr
    shown = json.loads(e.cli("tools", "show", "who.ami").stdout)
    assert shown["input_schema"]["required"] == ["text"] and shown["implementation"] == "python"
    # Planned from words by the planner service, run by a worker: no restart.
    view = _run(e, {"request": "identify the worker"})
    assert view["status"] == "succeeded", view
    assert [s["tool"] for s in view["steps"].values()] == ["who.ami"]
    # Every worker replica runs it (the shared work queue hands tasks to both).
    pids = {e.runtime()["pids"][n] for n in ("worker", "worker#2")}
    seen: set[int] = set()
    for _ in range(40):
        view = _run(e, {"plan": plan})
        assert view["status"] == "succeeded", view
        seen.add(view["steps"]["w"]["output"]["pid"])
        if seen == pids:
            break
    assert seen == pids


def test_broken_sources_are_listed_and_the_rest_works(tools_engine: Engine) -> None:
    e = tools_engine
    (Path(e.env["BATON_AGENTS_DIR"]) / "bad.yaml").write_text("name: [oops")
    assert e.cli("tools", "refresh").returncode == 0
    listing = _tools(e)
    broken = [(b.get("file") or b["origin"], b["reason"]) for b in listing["broken"]]
    [reason] = [r for where, r in broken if where.endswith("bad.yaml")]
    assert "invalid YAML" in reason
    # the plugin that cannot import, and the tool whose module is missing
    mine = [r for where, r in broken if where == "plugin:baton-test-plugins"]
    assert any("this plugin is broken on purpose" in r for r in mine)
    assert any("nosuch" in r for r in mine)
    out = e.cli("tools").stdout
    assert "BROKEN" in out and "bad.yaml" in out
    view = _run(e, {"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": 1}}]}})
    assert view["status"] == "succeeded"


def test_the_example_plugin_installs_runs_its_tool_and_vetoes_a_plan(
    tools_engine: Engine,
) -> None:
    e = tools_engine
    assert "github" in e.cli("plugins", "search", "github").stdout
    done = e.cli("plugins", "install", "github")
    assert done.returncode == 0, done.stderr
    tool = next(t for t in _tools(e)["tools"] if t["name"] == "github.create_issue")
    assert tool["origin"] == "plugin:baton-example-github"
    plan = {
        "steps": [
            {"id": "i", "tool": "github.create_issue", "input": {"repo": "o/r", "title": "Bug"}}
        ]
    }
    # Its tool needs the plugin enabled here, with the capabilities it declares granted.
    resp = e.http.post(f"{e.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 422 and "not enabled in this workspace" in resp.text
    refused = e.cli("plugins", "enable", "github")
    assert refused.returncode != 0 and "needs network, secrets" in refused.stderr
    assert e.cli("plugins", "enable", "github", "--grant", "network,secrets").returncode == 0
    assert "enabled (network, secrets)" in e.cli("plugins", "list").stdout
    for _ in range(20):  # the executor reads policies from the read model, cached for 2 s
        view = _run(e, {"plan": plan})
        if "not enabled" not in (view.get("error") or ""):
            break
        time.sleep(0.5)
    assert view["status"] == "succeeded", view
    assert view["steps"]["i"]["output"]["number"] >= 1
    sent = FakeGitHub.issues[-1]
    assert sent["path"] == "/repos/o/r/issues" and sent["key"] == f"{view['id']}:i"
    vetoed = _run(e, {"request": "summarise the plan to drop the production database"})
    assert vetoed["status"] == "failed"
    assert "vetoed by plugin github" in vetoed["error"] and "audit rule" in vetoed["error"]
    # A plan given directly skips the planner: the gateway shows it to the plugins (422, reason).
    wipe = {"steps": [{"id": "w", "tool": "mock.agent", "input": {"task": "wipe production"}}]}
    refused = e.http.post(f"{e.url}/v1/executions", json={"plan": wipe})
    assert refused.status_code == 422 and "vetoed by plugin github" in refused.json()["detail"]
    assert e.cli("plugins", "disable", "github").returncode == 0
    for _ in range(20):  # the planner reads policies from the read model, cached for 2 s
        allowed = _run(e, {"request": "summarise the plan to drop the production database"})
        if "vetoed" not in (allowed.get("error") or ""):
            break
        time.sleep(0.5)
    assert "vetoed" not in (allowed.get("error") or "")


def test_a_hanging_hook_times_out_and_is_reported_on_the_step(tools_engine: Engine) -> None:
    e = tools_engine
    assert e.cli("plugins", "enable", "hangs").returncode == 0
    plan = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": 2}}]}
    try:
        for _ in range(20):  # workers read policies from the read model, cached for 2 s
            view = _run(e, {"plan": plan})
            assert view["status"] == "succeeded"
            deadline = time.monotonic() + 3
            while not view["steps"]["a"].get("hook_errors") and time.monotonic() < deadline:
                time.sleep(0.1)  # the report is its own event; the view may get it a moment later
                view = e.http.get(f"{e.url}/v1/executions/{view['id']}").json()
            if view["steps"]["a"].get("hook_errors"):
                break
        [error] = view["steps"]["a"]["hook_errors"]
        assert error["plugin"] == "hangs" and "timed out after 1s" in error["error"]
        assert error["hook"] == "before_step" and error["attempt"] == 1
    finally:
        e.cli("plugins", "disable", "hangs")


def test_hooks_run_around_steps_and_at_the_end_only_where_enabled(tools_engine: Engine) -> None:
    e = tools_engine
    log = Path(e.env["BATON_TEST_HOOK_LOG"])
    ok = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": 3}}]}
    before = _run(e, {"plan": ok})["id"]  # not enabled yet: no hook runs for it
    assert "needs files" in e.cli("plugins", "enable", "recorder").stderr
    assert e.cli("plugins", "enable", "recorder", "--grant", "files").returncode == 0
    try:
        bad = {
            "steps": [
                {
                    "id": "b",
                    "tool": "mock.agent",
                    "input": {"failure_rate": 1},
                    "retry": {"max_attempts": 1},
                }
            ]
        }
        for _ in range(20):  # workers read policies from the read model, cached for 2 s
            done = _run(e, {"plan": ok})["id"]
            time.sleep(0.3)  # the worker writes before_step before it reports
            if log.exists() and f'"before_step", "execution_id": "{done}"' in log.read_text():
                break  # the executor and the worker both read the new policy
            time.sleep(0.5)
        time.sleep(2.5)  # every service's policy cache (2 s) now holds the plugin enabled
        done = _run(e, {"plan": ok})["id"]
        failed = _run(e, {"plan": bad})["id"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lines = [json.loads(x) for x in log.read_text().splitlines()]
            seen = {(x["hook"], x["execution_id"]) for x in lines}
            if ("on_execution_end", failed) in seen and ("on_execution_end", done) in seen:
                break
            time.sleep(0.2)
        assert {("before_step", done), ("after_step", done), ("on_execution_end", done)} <= seen
        assert {("before_step", failed), ("on_step_failure", failed)} <= seen
        ends = {x["execution_id"]: x["status"] for x in lines if x["hook"] == "on_execution_end"}
        assert ends[done] == "succeeded" and ends[failed] == "failed"
        assert before not in {x["execution_id"] for x in lines}
        # a hook writes to the step's own live log (its ``log`` argument)
        assert "recorder saw a start" in _log_lines(e, done)
        assert "recorder saw b fail" in _log_lines(e, failed)
    finally:
        e.cli("plugins", "disable", "recorder")


def _log_lines(e: Engine, execution_id: str) -> list[str]:
    """The execution's step log lines, once the worker's last chunk is in the read model."""
    deadline, lines = time.monotonic() + 15, []
    while time.monotonic() < deadline:
        page = e.http.get(f"{e.url}/v1/executions/{execution_id}/logs").json()["items"]
        lines = [r["message"] for r in page]
        if any(line.startswith("recorder saw") for line in lines):
            break
        time.sleep(0.2)
    return lines


QUOTE = """
name: quote.lookup
description: Look up a quote for a symbol.
input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
output_schema: {type: object}
side_effect: read
dry_run: simulate
dry_run_output: {price: 0, symbol: "${input.text}", rehearsal: true}
cache_ttl_s: 600
implementation:
  python: baton_test_plugins.agent:whoami
"""

TELLS = """
name: tell.peer
description: Tell another agent something from a Python tool.
input_schema:
  type: object
  properties: {sender: {type: string}, to: {type: string}}
  required: [sender, to]
output_schema: {type: object}
implementation:
  python: baton_test_plugins.agent:tells
"""


def _with_agent_file(e: Engine, name: str, text: str) -> None:
    (Path(e.env["BATON_AGENTS_DIR"]) / f"{name}.yaml").write_text(text)
    assert e.cli("tools", "refresh").returncode == 0
    listing = _tools(e)
    assert name in {t["name"] for t in listing["tools"]}, listing["broken"]


def test_an_agent_file_declares_its_dry_run_output_and_cache_ttl(tools_engine: Engine) -> None:
    e = tools_engine
    _with_agent_file(e, "quote.lookup", QUOTE)
    plan = {"steps": [{"id": "q", "tool": "quote.lookup", "input": {"text": "ACME"}}]}
    rehearsal = _run(e, {"plan": plan, "dry_run": True})
    assert rehearsal["status"] == "succeeded", rehearsal
    assert rehearsal["steps"]["q"]["output"] == {"price": 0, "symbol": "ACME", "rehearsal": True}
    first, second = _run(e, {"plan": plan}), _run(e, {"plan": plan})
    assert "pid" in first["steps"]["q"]["output"] and "cached_from" not in first["steps"]["q"]
    assert second["steps"]["q"]["cached_from"] == f"{first['id']}:q"


def test_a_message_from_a_python_tool_to_an_unknown_agent_fails_at_once(
    tools_engine: Engine,
) -> None:
    e = tools_engine
    _with_agent_file(e, "tell.peer", TELLS)
    hello = {"from": "alice", "to": "alice", "type": "INFORM"}
    steps = [{"id": "hello", "tool": "agent.send", "input": hello}]
    good = [*steps, {"id": "t", "tool": "tell.peer", "input": {"sender": "alice", "to": "alice"}}]
    assert _run(e, {"plan": {"steps": good}})["status"] == "succeeded"
    bad = [*steps, {"id": "t", "tool": "tell.peer", "input": {"sender": "alice", "to": "bob"}}]
    view = _run(e, {"plan": {"steps": bad}})
    assert view["status"] == "failed" and view["steps"]["t"]["attempts"] == 1, view
    assert (
        "ctx.agents: to: unknown agent 'bob' (this plan's agents: alice)"
        in view["steps"]["t"]["error"]
    )


def _from_events(e: Engine) -> dict[str, Counter[str]]:
    """Calls, successes, failures and retries per tool, counted from the raw events."""
    counts: dict[str, Counter[str]] = {}
    before = None
    while True:
        page = e.http.get(f"{e.url}/v1/executions", params={"limit": 500, "before": before}).json()
        for item in page["items"]:
            events = e.http.get(f"{e.url}/v1/executions/{item['id']}/events").json()["items"]
            attempts: dict[tuple[str, int], str] = {}
            for ev in (x["data"] for x in events):
                if ev.get("kind", "run") != "run":
                    continue
                key = (ev.get("step_id"), ev.get("attempt"))
                call = ev if ev["type"] == "execution.step_dispatched" else ev.get("call")
                if call:  # a task, or a pure step's one event (its call, then its outcome)
                    attempts[key] = call["tool"]
                    c = counts.setdefault(call["tool"], Counter())
                    c["calls"] += 1
                    c["retries"] += ev["attempt"] > 1
                if (
                    ev["type"] in ("execution.step_succeeded", "execution.step_failed")
                    and key in attempts
                ):
                    outcome = "succeeded" if ev["type"].endswith("succeeded") else "failed"
                    counts[attempts[key]][outcome] += 1
        before = page["next_before"]
        if before is None:
            return counts


def _registry(e: Engine) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in e.http.get(f"{e.url}/v1/agents").json()["agents"] if a["calls"]}


def test_the_registry_equals_the_events_and_survives_a_rebuild(tools_engine: Engine) -> None:
    e = tools_engine
    flaky = retried_agent("f", 3, 0.05, fail_times=1)
    assert _run(e, {"plan": flaky})["status"] == "succeeded"
    doomed = retried_agent("d", 2, 0.05, failure_rate=1)
    assert _run(e, {"plan": doomed})["status"] == "failed"

    def settled() -> tuple[dict[str, Counter[str]], dict[str, dict[str, Any]]]:
        for _ in range(100):  # the projector may be a batch behind the views we just read
            raw, reg = _from_events(e), _registry(e)
            if all(reg.get(t, {}).get("calls") == c["calls"] for t, c in raw.items()):
                return raw, reg
            time.sleep(0.1)
        return raw, reg

    raw, reg = settled()
    assert set(reg) == set(raw)
    for tool, c in raw.items():
        r = reg[tool]
        assert (r["calls"], r["succeeded"], r["failed"], r["retries"]) == (
            c["calls"],
            c["succeeded"],
            c["failed"],
            c["retries"],
        ), tool
    agent = reg["mock.agent"]
    assert agent["failed"] >= 3 and agent["retries"] >= 2 and agent["p50_ms"] is not None
    assert agent["success_rate"] == pytest.approx(
        agent["succeeded"] / (agent["succeeded"] + agent["failed"])
    )
    assert sum(agent["error_classes"].values()) == agent["failed"]
    rebuilt = e.cli("projections", "rebuild", timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _registry(e) == reg
    one = e.http.get(f"{e.url}/v1/agents/mock.agent").json()
    assert one["calls"] == agent["calls"] and one["origin"] == "builtin"
    assert "mock.agent" in e.cli("agents").stdout


SMS = """
name: sms.{name}
description: Send a text message (SMS) to a phone.
keywords: [sms]
input_schema:
  type: object
  properties: {{text: {{type: string}}}}
  required: [text]
output_schema: {{type: object}}
implementation:
  python: baton_test_plugins.agent:{fn}
"""


def _takes_stats() -> bool:
    import inspect

    from baton_planner.offline import OfflinePlanner

    return "stats" in inspect.signature(OfflinePlanner).parameters


@pytest.mark.skipif(not _takes_stats(), reason="the offline planner does not take figures yet")
def test_the_planner_prefers_the_equivalent_tool_that_succeeds(tools_engine: Engine) -> None:
    e = tools_engine
    folder = Path(e.env["BATON_AGENTS_DIR"])
    (folder / "sms-alpha.yaml").write_text(SMS.format(name="alpha", fn="fails"))
    (folder / "sms-beta.yaml").write_text(SMS.format(name="beta", fn="whoami"))
    assert e.cli("tools", "refresh").returncode == 0
    for name, status in (("alpha", "failed"), ("beta", "succeeded")):
        step = {"id": "s", "tool": f"sms.{name}", "input": {"text": "hi"}}
        for _ in range(3):
            plan = {"steps": [{**step, "retry": {"max_attempts": 1}}]}
            assert _run(e, {"plan": plan})["status"] == status
    chosen = None
    for _ in range(30):  # the registry is a projection, and the planner caches it for 5 s
        view = _run(e, {"request": "sms the team that the build is green"})
        chosen = [s["tool"] for s in view["steps"].values()]
        if chosen == ["sms.beta"]:
            break
        time.sleep(0.5)
    assert chosen == ["sms.beta"]
    figures = {a["name"]: a for a in e.http.get(f"{e.url}/v1/agents").json()["agents"]}
    assert figures["sms.alpha"]["success_rate"] == 0 and figures["sms.beta"]["success_rate"] == 1


CHROMIUM = os.environ.get("BATON_CHROMIUM") or "/usr/bin/chromium"


def test_the_agents_page_shows_the_registry(tools_engine: Engine) -> None:
    """Last in this module: the figures, broken sources and plugins of the tests above."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    e = tools_engine
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            code = e.http.post(f"{e.url}/v1/signin-codes").json()["code"]  # a one-time link
            page.goto(f"{e.url}/agents?code={code}")
            row = page.locator('tr[data-agent="mock.agent"]')
            row.wait_for(timeout=15_000)
            cells = row.locator("td").all_inner_texts()
            calls = e.http.get(f"{e.url}/v1/agents/mock.agent").json()["calls"]
            assert cells[1] == "builtin" and int(cells[3]) == calls > 0
            assert (
                page.locator('tr[data-agent="who.ami"]')
                .locator("td")
                .nth(1)
                .inner_text()
                .startswith("agents:")
            )
            assert "invalid YAML" in page.locator("#broken").inner_text()
            assert "github" in page.locator("#plugins").inner_text()
            page.click("#refresh")
            page.wait_for_function(
                "document.getElementById('toast').textContent.startsWith('catalogue')",
                timeout=15_000,
            )
        finally:
            browser.close()
