"""MCP servers' tools in plans (issue 29, the client side), against the engine as processes and
real MCP servers written with the SDK (``mcp_servers/ledger.py``, over stdio and streamable HTTP).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.embedded import free_port
from baton_common.testing import LocalHandler, wait_until

pytestmark = pytest.mark.e2e
LEDGER = str(Path(__file__).parent / "mcp_servers" / "ledger.py")


@pytest.fixture(autouse=True)
def _registry(engine: Engine) -> Iterator[None]:
    """The executor takes registry calls once it has started (the gateway is ready first);
    each test's servers are removed after it (the planner chooses among what is registered)."""
    servers = f"{engine.url}/v1/mcp/servers"
    wait_until(lambda: engine.http.get(servers).status_code == 200, 60, "the MCP registry")
    yield
    for server in engine.http.get(servers).json()["items"]:
        engine.http.delete(f"{servers}/{server['id']}")


def _name() -> str:
    return f"ledger{secrets.token_hex(3)}"


def _calls(folder: Path, tool: str | None = None) -> list[dict[str, Any]]:
    path = folder / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [c for c in map(json.loads, lines) if tool in (None, c["tool"])]


def _register(engine: Engine, **body: Any) -> httpx.Response:
    return engine.http.post(f"{engine.url}/v1/mcp/servers", json=body)


def _stdio(engine: Engine, folder: Path, **extra: Any) -> dict[str, Any]:
    env = {"LEDGER_DIR": str(folder), **extra.pop("env", {})}
    resp = _register(
        engine, name=_name(), transport="stdio", command=[sys.executable, LEDGER], env=env, **extra
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _run(engine: Engine, steps: list[dict[str, Any]]) -> str:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": {"steps": steps}})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _catalogue(engine: Engine) -> dict[str, dict[str, Any]]:
    tools = engine.http.get(f"{engine.url}/v1/tools").json()["tools"]
    return {t["name"]: t for t in tools}


@pytest.fixture
def http_ledger(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The ledger over streamable HTTP on 127.0.0.1 (the engine's egress list allows it)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, LEDGER, "http", str(port)],
        env={**os.environ, "LEDGER_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until(up, 20, "the HTTP ledger to listen")
    yield url, tmp_path
    proc.kill()  # SIGTERM would wait for the executor's open listen stream to end
    proc.wait(10)


def test_a_registered_server_s_tools_join_the_catalogue_with_classes_and_hidden_secrets(
    engine: Engine, tmp_path: Path
) -> None:
    server = _stdio(engine, tmp_path, secret_env={"LEDGER_TOKEN": "s3cret-token"})
    name = server["name"]
    classes = {t["name"]: t["side_effect"] for t in server["tools"]}
    assert classes[f"mcp.{name}.weather_forecast"] == "read"  # readOnlyHint
    assert classes[f"mcp.{name}.wipe_account"] == "critical"  # destructiveHint
    assert classes[f"mcp.{name}.record_payment"] == "write"  # no hint
    assert server["secret_env"] == ["LEDGER_TOKEN"]
    dump = subprocess.run(
        ["/usr/lib/postgresql/15/bin/pg_dump", "--dbname", engine.runtime()["database_url"]],
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    assert b"LEDGER_TOKEN" in dump or b"LEDGER_TOKEN".hex().encode() in dump  # recorded
    assert b"s3cret-token" not in dump and b"s3cret-token".hex().encode() not in dump  # sealed
    shown = engine.http.get(f"{engine.url}/v1/mcp/servers/{server['id']}")
    assert shown.status_code == 200 and "s3cret-token" not in shown.text
    listed = engine.http.get(f"{engine.url}/v1/mcp/servers").json()["items"]
    assert name in [s["name"] for s in listed]
    catalogue = _catalogue(engine)
    spec = catalogue[f"mcp.{name}.weather_forecast"]
    assert spec["input_schema"]["required"] == ["city"]
    assert "weather forecast" in spec["description"]

    resp = engine.http.put(
        f"{engine.url}/v1/mcp/servers/{name}/tools/weather_forecast/side-effect",
        json={"side_effect": "critical"},
    )
    assert resp.status_code == 200, resp.text
    wait_until(
        lambda: _catalogue(engine)[f"mcp.{name}.weather_forecast"]["side_effect"] == "critical",
        30,
        "the override in the catalogue",
    )
    assert engine.http.delete(f"{engine.url}/v1/mcp/servers/{name}").status_code == 204
    wait_until(lambda: f"mcp.{name}.weather_forecast" not in _catalogue(engine), 30, "removal")
    assert engine.http.get(f"{engine.url}/v1/mcp/servers/{name}").status_code == 404


def test_a_plan_calls_an_mcp_tool_once_per_key_through_a_kill_9_of_the_worker(
    engine: Engine, tmp_path: Path
) -> None:
    name = _stdio(engine, tmp_path, env={"LEDGER_DELAY_S": "2"})["name"]
    step = {"id": "pay", "tool": f"mcp.{name}.record_payment"}
    eid = _run(engine, [{**step, "input": {"payee": "ann", "amount": 12.5}}])
    wait_until(lambda: _calls(tmp_path, "record_payment"), 60, "the call to reach the server")
    os.kill(engine.runtime()["pids"]["worker"], signal.SIGKILL)  # mid-call: 2 s of work
    view = engine.wait(eid, timeout=120)
    assert view["status"] == "succeeded", view
    assert view["steps"]["pay"]["output"]["payee"] == "ann"
    key = f"{eid}:pay"
    calls = _calls(tmp_path, "record_payment")
    assert {c["key"] for c in calls} == {key}  # every attempt sent the step's key in _meta
    assert len(calls) >= 2  # the lost call was made again, by a restarted worker
    effects = json.loads((tmp_path / "effects.json").read_text())
    assert list(effects) == [key]  # and carried out once


def _approve(engine: Engine, eid: str) -> None:
    """Approve the execution's gate once the inbox shows it."""
    gates: list[dict[str, Any]] = []

    def pending() -> bool:
        params = {"execution": eid, "status": "pending"}
        gates[:] = engine.http.get(f"{engine.url}/v1/approvals", params=params).json()["items"]
        return bool(gates)

    wait_until(pending, 60, "the approval gate")
    decided = engine.http.post(
        f"{engine.url}/v1/approvals/{gates[0]['id']}/decision", json={"decision": "approve"}
    )
    assert decided.status_code == 200, decided.text


def test_a_destructive_tool_waits_for_approval_then_runs(engine: Engine, tmp_path: Path) -> None:
    name = _stdio(engine, tmp_path)["name"]
    step = {"id": "wipe", "tool": f"mcp.{name}.wipe_account", "input": {"account": "a1"}}
    eid = _run(engine, [step])

    def waiting() -> bool:
        steps = engine.http.get(f"{engine.url}/v1/executions/{eid}").json().get("steps") or {}
        return bool(steps.get("wipe", {}).get("status") == "waiting_approval")

    wait_until(waiting, 60, "the step to wait for approval")
    assert _calls(tmp_path, "wipe_account") == []  # nothing called before a person approves
    _approve(engine, eid)
    assert engine.wait(eid)["status"] == "succeeded"
    assert [c["key"] for c in _calls(tmp_path, "wipe_account")] == [f"{eid}:wipe"]


def test_the_planner_picks_an_mcp_tool_from_its_description(engine: Engine, tmp_path: Path) -> None:
    name = _stdio(engine, tmp_path)["name"]
    resp = engine.http.post(
        f"{engine.url}/v1/plans/draft", json={"request": "weather forecast for Lisbon tomorrow"}
    )
    assert resp.status_code == 200, resp.text
    tools = [s["tool"] for s in resp.json()["plan"]["steps"]]
    assert f"mcp.{name}.weather_forecast" in tools, tools


def test_a_crashed_stdio_server_is_started_again_and_the_step_retried(
    engine: Engine, tmp_path: Path
) -> None:
    name = _stdio(engine, tmp_path)["name"]
    eid = _run(engine, [{"id": "c", "tool": f"mcp.{name}.crash_once", "input": {}}])
    view = engine.wait(eid, timeout=90)
    assert view["status"] == "succeeded", view
    calls = _calls(tmp_path, "crash_once")
    assert len(calls) == 2 and calls[0]["pid"] != calls[1]["pid"]  # a new server process
    assert calls[0]["key"] == calls[1]["key"] == f"{eid}:c"


def test_a_critical_tool_whose_server_died_mid_call_is_not_called_again(
    engine: Engine, tmp_path: Path
) -> None:
    name = _stdio(engine, tmp_path, side_effects={"crash_once": "critical"})["name"]
    eid = _run(engine, [{"id": "c", "tool": f"mcp.{name}.crash_once", "input": {}}])
    _approve(engine, eid)
    view = engine.wait(eid, timeout=90)
    assert view["status"] == "failed"
    assert "outcome unknown" in view["steps"]["c"]["error"]
    assert len(_calls(tmp_path, "crash_once")) == 1


def test_tools_list_changed_updates_the_catalogue_without_a_refresh(
    engine: Engine, http_ledger: tuple[str, Path]
) -> None:
    url, _ = http_ledger
    name = _name()
    resp = _register(engine, name=name, transport="http", url=url)
    assert resp.status_code == 201, resp.text
    assert f"mcp.{name}.vault_balance" not in _catalogue(engine)
    eid = _run(engine, [{"id": "open", "tool": f"mcp.{name}.open_vault", "input": {}}])
    assert engine.wait(eid)["status"] == "succeeded"
    wait_until(lambda: f"mcp.{name}.vault_balance" in _catalogue(engine), 30, "the new tool listed")


class _NotMcp(LocalHandler):
    def do_POST(self) -> None:
        self.body()
        self.answer(200, b"<html>hello</html>", {"Content-Type": "text/html"})

    def do_GET(self) -> None:
        self.answer(200, b"<html>hello</html>", {"Content-Type": "text/html"})


def _refused(engine: Engine, status: int, words: str, **body: Any) -> None:
    resp = _register(engine, **body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"], resp.text
    names = [s["name"] for s in engine.http.get(f"{engine.url}/v1/mcp/servers").json()["items"]]
    assert body["name"] not in names  # nothing half-registered
    assert not any(t.startswith(f"mcp.{body['name']}.") for t in _catalogue(engine))


def test_bad_servers_are_refused_with_the_reason_and_nothing_is_kept(
    engine: Engine, tmp_path: Path
) -> None:
    other = ThreadingHTTPServer(("127.0.0.1", 0), _NotMcp)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        _refused(
            engine,
            422,
            "MCP",
            name=_name(),
            transport="http",
            url=f"http://127.0.0.1:{other.server_address[1]}/mcp",
        )
    finally:
        other.shutdown()
    closed = free_port()
    _refused(
        engine,
        422,
        "unreachable",
        name=_name(),
        transport="http",
        url=f"http://127.0.0.1:{closed}/mcp",
    )
    _refused(
        engine,
        422,
        "inputSchema is not a valid JSON schema",
        name=_name(),
        transport="stdio",
        command=[sys.executable, LEDGER],
        env={"LEDGER_DIR": str(tmp_path), "LEDGER_BAD_SCHEMA": "1"},
    )
    _refused(
        engine,
        422,
        "MCP",
        name=_name(),
        transport="stdio",
        command=[sys.executable, "-c", "print('hello, not MCP')"],
    )
    _refused(
        engine,
        403,
        "BATON_MCP_COMMANDS",
        name=_name(),
        transport="stdio",
        command=["/bin/sh", "-c", "id"],
    )
    _refused(
        engine, 403, "egress refused", name=_name(), transport="http", url="http://10.0.0.1/mcp"
    )
    assert _register(engine, name="Bad Name", transport="http", url="http://x").status_code == 422


def test_the_cli_registers_shows_refreshes_and_removes_a_server(
    engine: Engine, tmp_path: Path
) -> None:
    name = _name()
    command = f"{sys.executable} {LEDGER}"
    env = {"LEDGER_SECRET": "cli-s3cret"}
    added = engine.cli(
        "mcp",
        "servers",
        "add",
        name,
        "--command",
        command,
        "--env",
        f"LEDGER_DIR={tmp_path}",
        "--secret-env",
        "TOKEN=env:LEDGER_SECRET",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert f"mcp.{name}.wipe_account" in added.stdout and "critical" in added.stdout
    assert "TOKEN (sealed)" in added.stdout and "cli-s3cret" not in added.stdout
    listed = engine.cli("mcp", "servers", "list")
    assert name in listed.stdout, listed.stderr
    assert engine.cli("mcp", "servers", "refresh", name).returncode == 0
    changed = engine.cli("mcp", "servers", "side-effect", name, "record_payment", "critical")
    assert f"mcp.{name}.record_payment" in changed.stdout and "critical" in changed.stdout
    assert engine.cli("mcp", "servers", "remove", name).returncode == 0
    gone = engine.cli("mcp", "servers", "show", name)
    assert gone.returncode != 0 and "no MCP server" in gone.stderr
    refused = engine.cli("mcp", "servers", "add", _name(), "--command", "/bin/sh -c id")
    assert refused.returncode != 0 and "BATON_MCP_COMMANDS" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_timeout_or_a_cancel_cancels_the_call_on_the_server(
    engine: Engine, tmp_path: Path
) -> None:
    name = _stdio(engine, tmp_path)["name"]
    tool = f"mcp.{name}.count_slowly"  # 0.3 s a number, progress into the step's log
    once = {"max_attempts": 1}
    warm = {"id": "warm", "tool": f"mcp.{name}.weather_forecast", "input": {"city": "Oslo"}}
    slow = {"id": "t", "tool": tool, "input": {"to": 100}, "timeout": 8, "retry": once}
    # the first step starts the server on the worker; the slow one's 8 s are all its call's
    timed = _run(engine, [warm, {**slow, "depends_on": ["warm"]}])
    view = engine.wait(timed, timeout=60)
    assert view["status"] == "failed" and "timed out" in view["steps"]["t"]["error"]
    wait_until(lambda: _calls(tmp_path, "count_slowly_cancelled"), 30, "the server told (timeout)")
    logs = engine.http.get(f"{engine.url}/v1/executions/{timed}/logs").json()["items"]
    assert any(line["message"].startswith("progress 1/100") for line in logs)

    eid = _run(engine, [{"id": "c", "tool": tool, "input": {"to": 100}, "retry": once}])
    wait_until(
        lambda: any(
            line["message"].startswith("progress")
            for line in engine.http.get(f"{engine.url}/v1/executions/{eid}/logs").json()["items"]
        ),
        60,
        "the call under way",
    )
    assert engine.http.post(f"{engine.url}/v1/executions/{eid}/cancel", json={}).status_code < 300
    assert engine.wait(eid, timeout=60)["status"] == "cancelled"
    keys = [c["key"] for c in _calls(tmp_path, "count_slowly_cancelled")]
    wait_until(
        lambda: f"{eid}:c" in [c["key"] for c in _calls(tmp_path, "count_slowly_cancelled")],
        30,
        f"the server told (cancel); so far {keys}",
    )
