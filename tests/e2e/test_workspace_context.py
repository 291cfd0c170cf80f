"""The workspace's shared context on the engine as processes: a value one execution writes with
``scope: workspace`` is read by the next one and through the API and the CLI, never by another
workspace (404); a viewer reads it and cannot write or delete it; the writing execution's
history and replay show the write."""

from __future__ import annotations

import time
import uuid
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.testing import wait_until

pytestmark = pytest.mark.e2e

WRITE = {"steps": [{"id": "note", "tool": "context.set", "input": {
    "key": "budget", "value": {"max": 120}, "scope": "workspace"}}]}  # fmt: skip
READ = {
    "steps": [{"id": "r", "tool": "context.get",
               "input": {"key": "budget", "scope": "workspace", "default": "none"}}],
    "outputs": {"value": "${steps.r.output.value}", "by": "${steps.r.output.written_by}"},
}  # fmt: skip


class Workspace:
    """A fresh workspace with keys of the roles asked for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        made = engine.http.post(
            f"{engine.url}/v1/workspaces", json={"name": f"ctx {uuid.uuid4().hex[:6]}"}
        )
        assert made.status_code == 201, made.text
        self.id = made.json()["id"]

    def key(self, role: str) -> str:
        made = self.engine.http.post(
            f"{self.engine.url}/v1/workspaces/{self.id}/keys", json={"role": role}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["key"])


def _client(key: str) -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _run(engine: Engine, client: httpx.Client, plan: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    eid = resp.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.get(f"{engine.url}/v1/executions/{eid}").json()
        if view.get("status") in ("succeeded", "failed", "cancelled"):
            return dict(view)
        time.sleep(0.05)
    raise AssertionError(f"execution {eid} did not end")


def test_a_workspace_value_is_shared_by_its_executions_and_hidden_from_other_workspaces(
    engine: Engine,
) -> None:
    ws, other = Workspace(engine), Workspace(engine)
    operator, viewer = _client(ws.key("operator")), _client(ws.key("viewer"))
    stranger = _client(other.key("owner"))
    url = f"{engine.url}/v1/context/budget"

    wrote = _run(engine, operator, WRITE)
    assert wrote["status"] == "succeeded", wrote
    assert wrote["workspace_context"]["budget"]["version"] == 1
    assert "context" not in wrote  # not the execution's own context
    read = _run(engine, operator, READ)
    assert read["outputs"] == {"value": {"max": 120}, "by": f"{wrote['id']}:note"}

    entry = wait_until(
        lambda: (r := viewer.get(url)).status_code == 200 and r, what="the projected key"
    )
    assert entry.json()["value"] == {"max": 120} and entry.json()["version"] == 1
    assert viewer.get(f"{engine.url}/v1/context").json()["items"]["budget"]["version"] == 1
    # another workspace: not its key, not in its list, not in its executions
    assert stranger.get(url).status_code == 404
    assert "budget" not in stranger.get(f"{engine.url}/v1/context").json()["items"]
    assert _run(engine, stranger, READ)["outputs"]["value"] == "none"
    assert stranger.delete(url).status_code == 404

    # the writer's history and replay show the write
    eid = wrote["id"]
    history = operator.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"]
    types = [e["type"] for e in history]
    assert types.index("context.written") < types.index("execution.step_succeeded")
    env = {"BATON_API_KEY": ws.key("viewer")}
    text = engine.cli("replay", eid, "--at", str(len(history)), env=env)
    assert text.returncode == 0, text.stderr
    assert "workspace context budget" in text.stdout, text.stdout


def test_a_viewer_reads_but_cannot_write_and_an_operator_writes_and_deletes(
    engine: Engine,
) -> None:
    ws = Workspace(engine)
    operator, viewer = _client(ws.key("operator")), _client(ws.key("viewer"))
    url = f"{engine.url}/v1/context/plan"
    put = operator.put(url, json={"value": "a"})
    assert put.status_code == 202, put.text
    wait_until(lambda: viewer.get(url).status_code == 200, what="the write")

    refused = viewer.put(url, json={"value": "b"})
    assert refused.status_code == 403, refused.text
    assert "operator" in refused.json()["detail"]  # names the roles that may
    assert viewer.delete(url).status_code == 403
    assert operator.put(url, json={"value": "x" * 70_000}).status_code == 422
    assert operator.put(f"{engine.url}/v1/context/bad key", json={"value": 1}).status_code == 422

    # the CLI, as the operator: write, read, delete
    env = {"BATON_API_KEY": ws.key("operator")}
    out = engine.cli("context", "--workspace", "plan", "--set", '"c"', env=env)
    assert out.returncode == 0, out.stderr
    wait_until(lambda: viewer.get(url).json().get("version") == 2, what="version 2")
    shown = engine.cli("context", "-w", env=env)
    assert "plan" in shown.stdout and '"c"' in shown.stdout, shown.stdout
    gone = engine.cli("context", "-w", "plan", "--delete", env=env)
    assert gone.returncode == 0, gone.stderr
    wait_until(lambda: viewer.get(url).status_code == 404, what="the delete")
    read = _run(engine, operator, {**READ, "steps": [
        {**READ["steps"][0], "input": {"key": "plan", "scope": "workspace"}}]})  # fmt: skip
    assert read["outputs"]["value"] is None
    bad = engine.cli("context", "-w", "plan", "--set", "{nope", env=env)
    assert bad.returncode != 0 and "not JSON" in bad.stderr and "Traceback" not in bad.stderr
    missing = engine.cli("context", "-w", "nope", env=env)
    assert missing.returncode != 0 and "404" in missing.stderr, missing.stderr
    # the audit trail names who changed which key: the PUT, the CLI's write and its delete
    admin = _client(ws.key("admin"))

    def changes() -> list[Any]:
        items = admin.get(f"{engine.url}/v1/audit").json()["items"]
        return [(r["target"], r["detail"].get("delete")) for r in items
                if r["action"] == "context.put_requested"]  # fmt: skip

    audit = wait_until(lambda: len(changes()) >= 3 and changes(), what="the audit rows")
    assert sorted(audit, key=str) == [("context/plan", False)] * 2 + [("context/plan", True)]
