"""Workspaces, roles and API keys on the engine as processes: authentication, the role matrix,
isolation across workspaces over every route of the OpenAPI document, the audit trail."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py
from uuid import UUID

import httpx
import pytest
from baton_common.approvals import approval_id_for

from tests.e2e.conftest import Workspace, key_client

pytestmark = pytest.mark.e2e

ROLES = ("owner", "admin", "operator", "approver", "viewer")
PLAN = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "done"}}]}
GATED = {"steps": [{"id": "ask", "tool": "mock.agent", "requires_approval": True}]}
SLOW_PLAN = {"steps": [{"id": "a", "tool": "time.sleep", "input": {"seconds": 30}}]}


class Keys(Workspace):
    """A fresh workspace and one key per role in it."""

    def __init__(self, engine: Engine, label: str) -> None:
        super().__init__(engine, label)
        self.key_ids: dict[str, str] = {}
        self.clients: dict[str, httpx.Client] = {}
        for role in ROLES:
            made = self.key(role, name=f"{role}-key")
            self.key_ids[role] = made["id"]
            self.clients[role] = key_client(made["key"])

    def __getitem__(self, role: str) -> httpx.Client:
        return self.clients[role]


def test_every_v1_route_needs_a_valid_key(engine: Engine) -> None:
    paths = httpx.get(f"{engine.url}/openapi.json").json()["paths"]
    ids = {
        "execution_id": uuid.uuid4(),
        "workspace_id": "default",
        "user": "x",
        "key_id": uuid.uuid4(),
        "seq": 1,
        "approval_id": uuid.uuid4(),
        "schedule_id": uuid.uuid4(),
        "trigger_id": uuid.uuid4(),
        "endpoint_id": uuid.uuid4(),
        "subscription_id": uuid.uuid4(),
        "delivery_id": uuid.uuid4(),
        "calendar": "x",
        "name": "x",
        "version": 1,
        "key": "x",
        "server": "x",
        "tool": "x",
        "day": "2026-01-01",
    }
    for path, methods in paths.items():
        if not path.startswith(("/v1/", "/api/")):
            continue
        for method in methods:
            url = engine.url + path.format(**ids)
            for headers in ({}, {"Authorization": "Bearer bk_" + "0" * 32 + "_nope"}):
                resp = httpx.request(method, url, headers=headers, json={})
                assert resp.status_code == 401, (method, path, headers, resp.text)
                assert resp.headers.get("www-authenticate") == "Bearer"
    assert httpx.get(f"{engine.url}/healthz").status_code == 200  # probes need no key


def test_a_revoked_or_expired_key_stops_at_once(engine: Engine) -> None:
    ws = Keys(engine, "revoke")
    made = ws.key("viewer", name="short-lived")
    c = key_client(made["key"])
    assert c.get(f"{engine.url}/v1/executions").status_code == 200
    assert engine.http.delete(f"{engine.url}/v1/keys/{made['id']}").status_code == 204
    resp = c.get(f"{engine.url}/v1/executions")
    assert resp.status_code == 401 and "revoked" in resp.json()["detail"]
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    expiring = key_client(ws.key("viewer", name="expiring", expires_at=soon)["key"])
    assert expiring.get(f"{engine.url}/v1/executions").status_code == 200
    time.sleep(2.5)
    resp = expiring.get(f"{engine.url}/v1/executions")
    assert resp.status_code == 401 and "expired" in resp.json()["detail"]
    past = engine.http.post(
        f"{engine.url}/v1/workspaces/{ws.id}/keys",
        json={"role": "viewer", "expires_at": "2001-01-01T00:00:00Z"},
    )
    assert past.status_code == 422 and "past" in past.json()["detail"]


def test_a_key_is_shown_once_and_stored_only_as_a_hash(engine: Engine) -> None:
    ws = Keys(engine, "hash")
    made = ws.key("viewer", name="listed")
    listed = _eventually(
        lambda: engine.http.get(f"{engine.url}/v1/workspaces/{ws.id}/keys").json()["items"],
        lambda items: any(k["id"] == made["id"] for k in items),
    )
    assert made["key"] not in str(listed)
    secret = made["key"].split("_", 2)[2]
    events = engine.http.get(f"{engine.url}/v1/audit", params={"limit": 1000}).text
    assert secret not in events


ALLOWED = {
    "read": {"owner", "admin", "operator", "approver", "viewer"},
    "run": {"owner", "admin", "operator"},
    "audit": {"owner", "admin"},
    "manage": {"owner", "admin"},
    "own": {"owner"},
}


def test_role_matrix(engine: Engine) -> None:
    ws = Keys(engine, "roles")
    running = ws["operator"].post(f"{engine.url}/v1/executions", json={"plan": SLOW_PLAN})
    eid = running.json()["id"]
    calls = {
        "read": ("GET", "/v1/executions", None),
        "run": ("POST", "/v1/executions", {"plan": PLAN}),
        "audit": ("GET", "/v1/audit", None),
        "manage": ("POST", f"/v1/workspaces/{ws.id}/keys", {"role": "viewer"}),
        "own": ("POST", f"/v1/workspaces/{ws.id}/keys", {"role": "owner"}),
    }
    for permission, (method, path, body) in calls.items():
        for role in ROLES:
            resp = ws[role].request(method, engine.url + path, json=body)
            if role in ALLOWED[permission]:
                assert resp.status_code in (200, 201, 202), (permission, role, resp.text)
            else:
                assert resp.status_code == 403, (permission, role, resp.text)
                assert f"this key is {role!r}" in resp.json()["detail"]
                assert "needs the role" in resp.json()["detail"]
    for role in ROLES:  # steering: the operator's run, paused by whoever may
        resp = ws[role].post(f"{engine.url}/v1/executions/{eid}/pause")
        assert resp.status_code == (202 if role in ALLOWED["run"] else 403), (role, resp.text)
    policy = ws["admin"].put(f"{engine.url}/v1/workspaces/{ws.id}/policy", json={})
    assert policy.status_code == 200
    assert (
        ws["operator"].put(f"{engine.url}/v1/workspaces/{ws.id}/policy", json={}).status_code == 403
    )
    # creating workspaces is for the installation's owner: the default workspace's owner
    resp = ws["owner"].post(f"{engine.url}/v1/workspaces", json={"name": "not mine"})
    assert resp.status_code == 403 and "default workspace" in resp.json()["detail"]
    ws["owner"].post(f"{engine.url}/v1/executions/{eid}/cancel")


# A trigger filter that matches nothing these tests do.
NEVER = {"type": "execution.failed", "where": [{"path": "payload.error", "equals": "never"}]}
# Bodies that the routes accept, so that B's calls get past validation to the ownership check.
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/mcp/servers/{server}/tools/{tool}/side-effect"): {"side_effect": "read"},
    ("POST", "/v1/executions/{execution_id}/pause"): {"reason": "b"},
    ("POST", "/v1/executions/{execution_id}/resume"): None,
    ("POST", "/v1/executions/{execution_id}/cancel"): {"reason": "b"},
    ("PUT", "/v1/workspaces/{workspace_id}/members/{user}"): {"role": "viewer"},
    ("PUT", "/v1/workspaces/{workspace_id}/policy"): {"tools_deny": ["mock.agent"]},
    ("POST", "/v1/workspaces/{workspace_id}/keys"): {"role": "owner"},
    ("DELETE", "/v1/keys/{key_id}"): None,
    ("DELETE", "/v1/workspaces/{workspace_id}/members/{user}"): None,
    ("POST", "/v1/deadletters/{seq}/replay"): None,
    ("POST", "/v1/approvals/{approval_id}/decision"): {"decision": "approve"},
    ("PATCH", "/v1/schedules/{schedule_id}"): {"name": "b"},
    ("POST", "/v1/schedules/{schedule_id}/pause"): {"note": "b"},
    ("POST", "/v1/schedules/{schedule_id}/unpause"): {"note": "b"},
    ("POST", "/v1/schedules/{schedule_id}/trigger-now"): None,
    ("POST", "/v1/schedules/{schedule_id}/backfill"): {"start": "2026-01-01", "end": "2026-01-02"},
    ("PATCH", "/v1/triggers/{trigger_id}"): {"name": "b"},
    ("POST", "/v1/triggers/{trigger_id}/pause"): {"note": "b"},
    ("POST", "/v1/triggers/{trigger_id}/unpause"): {"note": "b"},
    ("POST", "/v1/triggers/{trigger_id}/trigger-now"): {"payload": {"error": "b"}},
    ("POST", "/v1/triggers/{trigger_id}/backfill"): {"start": "2026-01-01", "end": "2026-01-02"},
    ("POST", "/v1/webhooks/endpoints/{endpoint_id}/rotate"): {},
    ("POST", "/v1/calendars/{calendar}/ics"): None,  # the body is the ICS text, not JSON
    ("PATCH", "/v1/calendars/{calendar}"): {"kind": "room", "capacity": 4},
    ("POST", "/v1/plans/{name}/promote"): {"version": 1},
    ("POST", "/v1/plans/{name}/rollback"): None,
    ("PUT", "/v1/plans/{name}/routing"): {"split": [{"version": 1, "weight": 100}]},
    ("POST", "/v1/plugins/{name}/enable"): {"grant": []},
    ("POST", "/v1/plugins/{name}/disable"): None,
    ("POST", "/api/orchestrate/{execution_id}/pause"): {"reason": "b"},
    ("POST", "/api/orchestrate/{execution_id}/resume"): None,
    ("POST", "/api/orchestrate/{execution_id}/cancel"): {"reason": "b"},
    ("PUT", "/v1/executions/{execution_id}/context/{key}"): {"value": "b"},
}
COLLECTION_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/executions"): {"plan": PLAN},
    ("POST", "/v1/executions/batch"): {"items": [{"plan": PLAN}]},
    ("POST", "/v1/plans/validate"): {"plan": PLAN},
    ("POST", "/v1/plans/draft"): {"request": "collect reports for api"},
    ("POST", "/api/orchestrate"): {"query": "collect reports for api"},
    ("POST", "/v1/workspaces"): None,  # the installation owner's: B may not (403, no object of A's)
    ("POST", "/v1/archive/run"): None,  # the installation owner's too: B may not (403)
    # an LLM planner (409 here; test_llm_planner.py), a real MCP server (test_mcp_client.py)
    ("POST", "/v1/plans/compare"): None,
    ("POST", "/v1/mcp/servers"): None,
    ("POST", "/v1/schedules"): {"name": "b", "at": "2030-01-01T00:00:00Z", "request": "say hi"},
    ("POST", "/v1/schedules/preview"): {"cron": "0 9 * * 1", "request": "x"},
    ("POST", "/v1/triggers"): {"name": "b", "request": "say hi", "filter": NEVER},
    ("POST", "/v1/webhooks/endpoints"): {"name": "b-hook", "action": {"request": "say hi"}},
    ("POST", "/v1/webhooks/subscriptions"): {"url": "http://93.184.215.14/b", "events": ["x.*"]},
    ("POST", "/v1/webhooks/deliveries/redeliver"): {"since": "2020-01-01T00:00:00+00:00"},
    ("POST", "/v1/calendars"): {"name": "b-cal"},
    ("POST", "/v1/calendars/slots"): {
        "attendees": ["ann"],
        "duration_minutes": 30,
        "window_start": "2030-01-07T00:00:00Z",
        "window_end": "2030-01-08T00:00:00Z",
    },
    ("POST", "/v1/calendars/conflicts"): {"start": "2030-01-07T10:00Z", "end": "2030-01-07T11:00Z"},
    ("POST", "/v1/cache/clear"): {"tool": "text.template"},
    ("POST", "/v1/tools/refresh"): {},
    ("POST", "/v1/signin-codes"): {},  # B's own code: nothing of A's in it
}


def test_workspace_b_gets_404_for_every_route_on_a_objects(engine: Engine) -> None:
    """Generated from the OpenAPI document: a new route with a path parameter or a body is
    covered here or this test fails."""
    a, b = Keys(engine, "alpha"), Keys(engine, "beta")
    a_exec = (
        a["operator"].post(f"{engine.url}/v1/executions", json={"plan": SLOW_PLAN}).json()["id"]
    )
    a_done = a["operator"].post(f"{engine.url}/v1/executions", json={"plan": PLAN}).json()["id"]
    a_gated = a["operator"].post(f"{engine.url}/v1/executions", json={"plan": GATED}).json()["id"]
    engine_wait(engine, a["viewer"], a_done)
    a["admin"].put(f"{engine.url}/v1/workspaces/{a.id}/members/alice", json={"role": "operator"})
    a["operator"].put(f"{engine.url}/v1/context/offer", json={"value": "a"})
    a_ids = {
        "execution_id": a_exec,
        "workspace_id": a.id,
        "user": "alice",
        "key_id": a.key_ids["viewer"],
        "seq": park_one(engine, a),
        "approval_id": str(approval_id_for(UUID(a_gated), "ask")),
        "key": "offer",
        **scheduler_objects(engine, a),
        **webhook_objects(engine, a),
        **calendar_objects(engine, a),
        **plan_objects(engine, a),
        "name": "a-oops",  # tools, agents and plugins: one that does not exist is a 404
        "server": "a-oops",  # MCP servers: likewise (test_mcp_client.py registers real ones)
        "tool": "t",
        "day": "2026-01-01",  # the audit archive: a day with nothing archived is a 404
    }
    paths = httpx.get(f"{engine.url}/openapi.json").json()["paths"]
    checked = skipped = 0
    for path, methods in paths.items():
        if not path.startswith(("/v1/", "/api/")):
            continue
        params = set(re.findall(r"{(\w+)}", path))
        assert params <= set(a_ids), (
            f"{path}: teach this test the parameter(s) {params - set(a_ids)}"
        )
        for method in (m.upper() for m in methods):
            if (method, path) in OWN_NAMES:
                skipped += 1  # B's own plan of that name: checked after the loop
                continue
            if params:
                assert (method, path) in BODIES or "requestBody" not in methods[method.lower()], (
                    f"{method} {path}: add a valid body to BODIES"
                )
                resp = b["owner"].request(
                    method,
                    engine.url + path.format(**a_ids),
                    json=BODIES.get((method, path)),
                    params=_required_query(methods[method.lower()]),
                )
                assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
            elif method == "GET":
                status, text = _get_briefly(b["owner"], engine.url + path)
                assert status == 200, (path, text)
                mine = (a_exec, a_done, a_gated, a_ids["approval_id"], a.id, "a-oops")
                for value in (*mine, *a.key_ids.values()):
                    assert value not in text, (path, value)
            else:
                assert (method, path) in COLLECTION_BODIES, (
                    f"{method} {path}: add it to COLLECTION_BODIES"
                )
                body = COLLECTION_BODIES[(method, path)]
                if body is None:
                    skipped += 1
                    continue
                resp = b["owner"].request(method, engine.url + path, json=body)
                assert resp.status_code < 300 and a_exec not in resp.text, (path, resp.text)
            checked += 1
    v1 = [(p, m) for p, ms in paths.items() if p.startswith(("/v1/", "/api/")) for m in ms]
    assert checked + skipped == len(v1) and checked >= 24
    # a plan name is per workspace: B pushing to A's name makes B's own plan, A's is untouched
    pushed = b["owner"].post(f"{engine.url}/v1/plans/a-plan/versions", json={"plan": PLAN})
    assert pushed.status_code == 201 and pushed.json()["version"] == 1, pushed.text
    assert len(a["viewer"].get(f"{engine.url}/v1/plans/a-plan").json()["versions"]) == 2
    # a key of the workspace's context too: B's PUT writes B's own key, A's keeps its value
    put = b["owner"].put(f"{engine.url}/v1/context/offer", json={"value": "b"})
    assert put.status_code == 202, put.text
    assert _context_value(b["viewer"], engine, "offer") == "b"
    assert _context_value(a["viewer"], engine, "offer") == "a"
    # and A's objects are untouched by all of that
    assert a["viewer"].get(f"{engine.url}/v1/executions/{a_exec}").json()["paused"] is False
    assert a["viewer"].get(f"{engine.url}/v1/workspaces/{a.id}/policy").json()["tools_deny"] == []
    assert a["viewer"].get(f"{engine.url}/v1/executions").status_code == 200
    a["owner"].post(f"{engine.url}/v1/executions/{a_exec}/cancel")


def test_a_workspace_sees_only_its_executions_and_the_workspace_header_is_ignored(
    engine: Engine,
) -> None:
    a, b = Keys(engine, "iso-a"), Keys(engine, "iso-b")
    resp = a["operator"].post(
        f"{engine.url}/v1/executions",
        json={"plan": PLAN},
        headers={"X-Baton-Workspace": b.id},
    )
    eid = resp.json()["id"]
    view = engine_wait(engine, a["viewer"], eid)
    assert view["workspace_id"] == a.id
    assert eid not in b["viewer"].get(f"{engine.url}/v1/executions").text
    assert b["viewer"].get(f"{engine.url}/v1/stats").json()["executions"] == {}
    assert a["viewer"].get(f"{engine.url}/v1/stats").json()["executions"] == {"succeeded": 1}
    done = engine.cli("replay", eid, env={"BATON_API_KEY": _key_of(b)})
    assert done.returncode == 2 and "404" in done.stderr and "Traceback" not in done.stderr
    done = engine.cli("replay", eid, "--at", "2", env={"BATON_API_KEY": _key_of(a)})
    assert done.returncode == 0 and "as of event 2" in done.stdout, done.stderr


def test_a_denied_tool_is_refused_with_the_reason(engine: Engine) -> None:
    ws = Keys(engine, "policy")
    policy = {"tools_deny": ["http.request"], "tool_rates": {"llm.generate": "30/min"}}
    assert (
        ws["admin"].put(f"{engine.url}/v1/workspaces/{ws.id}/policy", json=policy).status_code
        == 200
    )
    plan = {
        "steps": [{"id": "call", "tool": "http.request", "input": {"url": "http://127.0.0.1:1/"}}]
    }
    resp = ws["operator"].post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 422
    assert resp.json()["problems"] == [
        {
            "step": "call",
            "field": "tool",
            "message": "tool 'http.request' is denied in this workspace",
        }
    ]
    assert (
        ws["operator"].post(f"{engine.url}/v1/plans/validate", json={"plan": plan}).status_code
        == 422
    )
    # the default workspace is not affected
    assert (
        engine.http.post(f"{engine.url}/v1/plans/validate", json={"plan": plan}).status_code == 200
    )
    for bad in (
        {"max_steps_per_minute": -1},
        {"tool_rates": {"llm.generate": "-3/s"}},
        {"bogus": 1},
    ):
        resp = ws["admin"].put(f"{engine.url}/v1/workspaces/{ws.id}/policy", json=bad)
        assert resp.status_code == 422, (bad, resp.text)


def test_members_and_bad_input(engine: Engine) -> None:
    ws = Keys(engine, "members")
    url = f"{engine.url}/v1/workspaces/{ws.id}"
    assert ws["admin"].put(f"{url}/members/bob", json={"role": "approver"}).status_code == 200
    assert ws["admin"].put(f"{url}/members/carol", json={"role": "owner"}).status_code == 403
    assert ws["owner"].put(f"{url}/members/carol", json={"role": "owner"}).status_code == 200
    bad = ws["admin"].put(f"{url}/members/bob", json={"role": "boss"})
    assert bad.status_code == 422 and "role" in bad.text
    members = ws["viewer"].get(url).json()["members"]
    assert members == [{"user": "bob", "role": "approver"}, {"user": "carol", "role": "owner"}]
    assert ws["admin"].delete(f"{url}/members/carol").status_code == 403
    assert ws["admin"].delete(f"{url}/members/bob").status_code == 204
    assert ws["admin"].delete(f"{url}/members/bob").status_code == 404
    assert ws["admin"].post(f"{url}/keys", json={"role": "viewer", "bogus": 1}).status_code == 422
    resp = engine.http.post(f"{engine.url}/v1/workspaces", json={"name": "!!!"})
    assert resp.status_code == 422 and "letters or digits" in resp.json()["detail"]
    again = engine.http.post(f"{engine.url}/v1/workspaces", json={"name": ws.id})
    assert again.status_code == 409


def test_audit_says_who_did_what(engine: Engine) -> None:
    ws = Keys(engine, "audit")
    eid = ws["operator"].post(f"{engine.url}/v1/executions", json={"plan": SLOW_PLAN}).json()["id"]
    ws["operator"].post(f"{engine.url}/v1/executions/{eid}/cancel", json={"reason": "wrong day"})
    ws["admin"].put(
        f"{engine.url}/v1/workspaces/{ws.id}/policy", json={"tools_deny": ["files.delete"]}
    )
    items = _eventually(
        lambda: ws["admin"].get(f"{engine.url}/v1/audit").json()["items"],
        lambda items: len(items) >= 9,
    )
    seen = [(i["actor"], i["action"], i["target"]) for i in reversed(items)]
    assert ("operator-key (operator)", "execution.requested", eid) in seen
    assert ("operator-key (operator)", "execution.cancel_requested", eid) in seen
    assert ("admin-key (admin)", "workspace.policy_set", ws.id) in seen
    created = [i for i in items if i["action"] == "workspace.key_created"]
    assert {i["detail"]["role"] for i in created} == set(ROLES)
    cancel = next(i for i in items if i["action"] == "execution.cancel_requested")
    assert cancel["detail"]["reason"] == "wrong day"
    only = ws["admin"].get(f"{engine.url}/v1/audit", params={"actor": "admin-key (admin)"}).json()
    assert {i["actor"] for i in only["items"]} == {"admin-key (admin)"}
    hook = ws["admin"].post(
        f"{engine.url}/v1/webhooks/endpoints",
        json={"name": "ci", "scheme": "standard", "action": {"request": "collect reports"}},
    )
    assert hook.status_code == 201, hook.text
    trail = _eventually(
        lambda: ws["admin"].get(f"{engine.url}/v1/audit").json()["items"],
        lambda items: any(i["action"] == "webhook.endpoint_created" for i in items),
    )
    created = next(i for i in trail if i["action"] == "webhook.endpoint_created")
    assert created["actor"] == "admin-key (admin)"
    assert hook.json()["secret"] not in json.dumps(trail)  # never a secret in the trail
    done = engine.cli("audit", env={"BATON_API_KEY": _key_of(ws, "admin")})
    assert done.returncode == 0 and "execution.cancel_requested" in done.stdout, done.stderr


def test_cli_manages_keys_with_clear_errors(engine: Engine) -> None:
    ws = Keys(engine, "cli")
    admin = {"BATON_API_KEY": _key_of(ws, "admin")}
    made = engine.cli("keys", "create", "--role", "operator", "--name", "deploy-bot", env=admin)
    assert made.returncode == 0 and "shown once" in made.stdout, made.stderr
    key_id = made.stdout.split()[1]
    listed = engine.cli("keys", "list", env=admin)
    assert listed.returncode == 0 and "deploy-bot" in listed.stdout
    operator = {"BATON_API_KEY": _key_of(ws, "operator")}
    denied = engine.cli("keys", "create", "--role", "viewer", env=operator)
    assert denied.returncode == 2 and "403" in denied.stderr and "Traceback" not in denied.stderr
    assert engine.cli("keys", "revoke", key_id, env=admin).returncode == 0
    who = engine.cli("whoami", env={"BATON_API_KEY": "bk_bogus"})
    assert who.returncode == 2 and "401" in who.stderr and "Traceback" not in who.stderr
    me = engine.cli("whoami", env=operator)
    assert me.stdout.strip() == f"operator-key (operator) in workspace {ws.id}"


def _key_of(ws: Keys, role: str = "owner") -> str:
    auth = ws.clients[role].headers["Authorization"]
    return str(auth.removeprefix("Bearer "))


QUERY = {
    "at": 1,
    "from": 1,
    "to": 2,
    "window_start": "2030-01-07T00:00:00Z",
    "window_end": "2030-01-08T00:00:00Z",
}  # values for required query parameters
# A public address (no DNS, passes the SSRF guard); nothing listens for these tests.
HOOK_URL = "http://93.184.215.14/hook"


def webhook_objects(engine: Engine, ws: Keys) -> dict[str, str]:
    """A webhook endpoint, a subscription and a delivery (a test event) of ``ws``."""
    url = f"{engine.url}/v1/webhooks"
    action = {"plan": PLAN, "inputs": {"n": "${payload.n}"}}
    made = ws["operator"].post(f"{url}/endpoints", json={"name": "a-hook", "action": action})
    sub = ws["operator"].post(f"{url}/subscriptions", json={"url": HOOK_URL, "events": ["x.*"]})
    assert made.status_code == 201 and sub.status_code == 201, (made.text, sub.text)
    test = ws["operator"].post(f"{url}/subscriptions/{sub.json()['id']}/test")
    assert test.status_code == 202, test.text
    return {
        "endpoint_id": made.json()["id"],
        "subscription_id": sub.json()["id"],
        "delivery_id": test.json()["id"],
    }


def calendar_objects(engine: Engine, ws: Keys) -> dict[str, str]:
    """A built-in calendar of ``ws`` with one event in it."""
    made = ws["operator"].post(f"{engine.url}/v1/calendars", json={"name": "a-cal"})
    assert made.status_code == 201, made.text
    plan = {
        "steps": [
            {
                "id": "book",
                "tool": "calendar.create_event",
                "input": {
                    "calendar": "a-cal",
                    "title": "a-oops",
                    "start": "2030-01-07T10:00:00Z",
                    "end": "2030-01-07T10:30:00Z",
                },
            }
        ]
    }
    eid = ws["operator"].post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    engine_wait(engine, ws["viewer"], eid)
    return {"calendar": "a-cal"}


# Routes that make an object of the caller's own under a name from the path (not found: created).
# A name B uses for its own object (a saved plan, a key of its workspace's context): checked
# after the loop, leaving A's object of that name as it was.
def _context_value(client: httpx.Client, engine: Engine, key: str) -> Any:
    """A key of the client's workspace context, once the projector shows it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        resp = client.get(f"{engine.url}/v1/context/{key}")
        if resp.status_code == 200:
            return resp.json()["value"]
        time.sleep(0.1)
    raise AssertionError(f"no context key {key!r}")


OWN_NAMES = {("POST", "/v1/plans/{name}/versions"), ("PUT", "/v1/context/{key}")}


def plan_objects(engine: Engine, ws: Keys) -> dict[str, str]:
    """A saved plan of ``ws`` with two versions."""
    for text in ("one", "two"):
        plan = {"steps": [{"id": "a", "tool": "text.template", "input": {"template": text}}]}
        made = ws["operator"].post(f"{engine.url}/v1/plans/a-plan/versions", json={"plan": plan})
        assert made.status_code == 201, made.text
    return {"name": "a-plan", "version": "1"}


def scheduler_objects(engine: Engine, ws: Keys) -> dict[str, str]:
    """A schedule (one time, years away) and a trigger (matching nothing) of ``ws``."""
    once = {"name": "a-once", "at": "2030-01-01T00:00:00Z", "plan": PLAN}
    made = ws["operator"].post(f"{engine.url}/v1/schedules", json=once)
    hook = {"name": "a-never", "plan": PLAN, "filter": NEVER}
    trig = ws["operator"].post(f"{engine.url}/v1/triggers", json=hook)
    assert made.status_code == 201 and trig.status_code == 201, (made.text, trig.text)
    return {"schedule_id": made.json()["id"], "trigger_id": trig.json()["id"]}


def _required_query(operation: dict[str, Any]) -> dict[str, Any]:
    names = [
        p["name"]
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    ]
    assert set(names) <= set(QUERY), f"teach this test the query parameter(s) {names}"
    return {n: QUERY[n] for n in names}


def _get_briefly(c: httpx.Client, url: str) -> tuple[int, str]:
    """A GET; a live stream (SSE) is read for a moment, with A's events going on meanwhile."""
    text = ""
    timeout = httpx.Timeout(30, read=2)
    with c.stream("GET", url, params={"limit": 500}, timeout=timeout) as resp:
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            return resp.status_code, resp.read().decode()
        try:
            for chunk in resp.iter_text():
                text += chunk
        except httpx.ReadTimeout:
            pass  # nothing more of ours to see
    return resp.status_code, text


def park_one(engine: Engine, ws: Keys) -> int:
    """A malformed message on the workspace's subjects: parked, and listed to its admin only."""
    import asyncio

    import nats

    async def publish() -> None:
        nc = await nats.connect(**engine.nats())
        subject = f"baton.{ws.id}.task.finished"
        await nc.jetstream().publish(
            subject, b"{a-oops", headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )
        await nc.close()

    asyncio.run(publish())
    items = _eventually(
        lambda: ws["admin"].get(f"{engine.url}/v1/deadletters").json()["items"],
        lambda items: any("a-oops" in i["data"] for i in items),
    )
    assert ws["operator"].get(f"{engine.url}/v1/deadletters").status_code == 403
    return int(items[0]["seq"])


def test_dead_letters_are_the_workspace_s_own_and_can_be_replayed(engine: Engine) -> None:
    a, b = Keys(engine, "dlq-a"), Keys(engine, "dlq-b")
    seq = park_one(engine, a)
    assert b["admin"].get(f"{engine.url}/v1/deadletters").json()["items"] == []
    assert b["admin"].post(f"{engine.url}/v1/deadletters/{seq}/replay").status_code == 404
    listed = engine.cli("deadletters", env={"BATON_API_KEY": _key_of(a, "admin")})
    assert listed.returncode == 0 and "not JSON" in listed.stdout, listed.stderr
    assert a["admin"].post(f"{engine.url}/v1/deadletters/{seq}/replay").status_code == 202
    # back on its subject, still malformed: parked again under a new sequence number
    again = _eventually(
        lambda: a["admin"].get(f"{engine.url}/v1/deadletters").json()["items"],
        lambda items: bool(items) and items[0]["seq"] != seq,
    )
    assert [i["seq"] for i in again if i["seq"] == seq] == []


def engine_wait(engine: Engine, c: httpx.Client, eid: str, timeout: float = 60) -> dict[str, Any]:
    return dict(
        _eventually(
            lambda: c.get(f"{engine.url}/v1/executions/{eid}").json(),
            lambda v: v.get("status") in ("succeeded", "failed", "cancelled"),
            timeout,
        )
    )


def _eventually(get: Any, ok: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    value = get()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {value}")
        time.sleep(0.1)
        value = get()
    return value
