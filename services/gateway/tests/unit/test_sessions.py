"""Roles, dashboard sessions, sign-in codes, CSRF and throttles, on the app in process (the
in-memory store and sessions; a stand-in for the read models)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from baton_common.store import MemoryEventStore
from baton_common.workspaces import (
    DEFAULT_WORKSPACE,
    InstallationLimits,
    WorkspacePolicy,
    key_string,
    split_key,
)
from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.domain import ApiKey, Principal
from baton_gateway.routes import deps
from baton_gateway.services import Services
from baton_gateway.throttle import Throttle

ROOT = Principal(DEFAULT_WORKSPACE, "owner", "root")


class Views:
    """The read models, as far as these tests need them: one open plan review, no events."""

    def __init__(self) -> None:
        self.gate = {"workspace_id": DEFAULT_WORKSPACE, "tool": "baton.plan", "status": "pending"}

    async def approval(self, _approval_id: Any) -> dict[str, Any]:
        return self.gate

    async def last_seq(self) -> int:
        return 0

    async def workspace_events(self, _workspace: str, _after: int) -> list[Any]:
        return []


@pytest.fixture
def access() -> AccessApp:
    app = AccessApp(MemoryEventStore("gateway"), None)
    app.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    return app


def _client(access: AccessApp, trusted_proxies: str = "") -> httpx.AsyncClient:
    services = Services(intake=IntakeApp(access.store, None), reader=Views(), access=access)
    app = create_app(services, trusted_proxies)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@pytest.fixture
async def client(access: AccessApp) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(access) as http:
        yield http


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _code(client: httpx.AsyncClient, key: str) -> str:
    made = await client.post("/v1/signin-codes", headers=_bearer(key))
    assert made.status_code == 201, made.text
    assert made.json()["expires_in"] == 600
    return str(made.json()["code"])


# --- roles ----------------------------------------------------------------------------------------


async def test_a_viewer_can_neither_decide_an_approval_nor_draft_a_plan(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    _, viewer = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
    decided = await client.post(
        f"/v1/approvals/{uuid4()}/decision", json={"decision": "approve"}, headers=_bearer(viewer)
    )
    assert decided.status_code == 403 and "approve" in decided.json()["detail"]
    drafted = await client.post(
        "/v1/plans/draft", json={"request": "say hello"}, headers=_bearer(viewer)
    )
    assert drafted.status_code == 403 and "operator" in drafted.json()["detail"]
    compared = await client.post(
        "/v1/plans/compare", json={"request": "say hello"}, headers=_bearer(viewer)
    )
    assert compared.status_code == 403 and "operator" in compared.json()["detail"]


async def test_an_edited_plan_with_a_denied_tool_is_refused_before_it_reaches_hitl(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    access.set_policy(DEFAULT_WORKSPACE, WorkspacePolicy(tools_deny=["mock.critical"]), ROOT)
    _, approver = access.create_key(DEFAULT_WORKSPACE, "approver", None, None, ROOT)
    plan = {"steps": [{"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}}]}
    body = {"decision": "edit", "input": {"plan": plan}}
    refused = await client.post(
        f"/v1/approvals/{uuid4()}/decision", json=body, headers=_bearer(approver)
    )
    assert refused.status_code == 422
    assert "mock.critical" in refused.json()["detail"] and "denied" in refused.json()["detail"]


async def test_a_policy_that_cannot_be_read_refuses_the_submission(
    client: httpx.AsyncClient, access: AccessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_workspace: str) -> None:
        raise OSError("database down")

    owner = _owner(access)
    monkeypatch.setattr(access, "workspace", broken)
    plan = {"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "x"}}]}}
    answer = await client.post("/v1/executions", json=plan, headers=_bearer(owner))
    assert answer.status_code == 503 and "policy" in answer.json()["detail"]


async def test_the_installations_denied_tools_win_over_the_workspaces_allow_list() -> None:
    limits = InstallationLimits(BATON_DENIED_TOOLS="mock.*")
    access = AccessApp(MemoryEventStore("gateway"), None, limits=limits)
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    allow = WorkspacePolicy(tools_allow=["mock.agent", "text.template"])
    access.set_policy(DEFAULT_WORKSPACE, allow, ROOT)  # an admin cannot lift the limit
    plan = {"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "x"}}]}}
    async with _client(access) as client:
        owner = _bearer(_owner(access))
        refused = await client.post("/v1/executions", json=plan, headers=owner)
        assert refused.status_code == 422
        assert "denied by this installation" in refused.json()["detail"]
        shown = await client.get(f"/v1/workspaces/{DEFAULT_WORKSPACE}/policy", headers=owner)
        assert shown.json()["tools_allow"] == ["mock.agent", "text.template"]


def _owner(access: AccessApp) -> str:
    return access.create_key(DEFAULT_WORKSPACE, "owner", None, None, ROOT)[1]


# --- sign-in codes and sessions ------------------------------------------------------------------


async def test_a_code_signs_in_once_and_the_cookie_names_a_session_not_the_key(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    _, key = access.create_key(DEFAULT_WORKSPACE, "operator", "ann", None, ROOT)
    code = await _code(client, key)
    opened = await client.get(f"/plans?code={code}&x=1")
    assert opened.status_code == 303 and opened.headers["location"] == "/plans?x=1"
    session = client.cookies["baton_session"]
    assert key not in session and split_key(key)[1] not in session  # type: ignore[index]
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert (await client.get("/v1/whoami")).json()["name"] == "ann"
    client.cookies.clear()
    again = await client.get(f"/plans?code={code}")
    assert again.status_code == 401 and "used already" in again.text


async def test_a_token_link_no_longer_signs_in(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    key = _owner(access)
    answer = await client.get(f"/plans?token={key}")
    assert answer.status_code == 401 and "no longer accepted" in answer.text
    assert "baton_session" not in client.cookies


async def test_a_session_ends_with_its_key_and_at_sign_out(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    key_id, key = access.create_key(DEFAULT_WORKSPACE, "operator", None, None, ROOT)
    await client.get(f"/plans?code={await _code(client, key)}")
    assert (await client.get("/v1/whoami")).status_code == 200
    access.revoke_key(key_id, "leaked", ROOT)
    assert (await client.get("/v1/whoami")).status_code == 401
    other = _owner(access)
    await client.get(f"/plans?code={await _code(client, other)}")
    session = client.cookies["baton_session"]
    await client.get("/signout")
    client.cookies.set("baton_session", session)  # a copy kept from before the sign-out
    assert (await client.get("/v1/whoami")).status_code == 401


async def test_the_signin_form_needs_its_csrf_token(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    key = _owner(access)
    forged = await client.post("/signin", data={"key": key, "next": "/plans"})
    assert forged.status_code == 403 and "baton_session" not in client.cookies
    form = await client.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    wrong = await client.post("/signin", data={"key": key, "csrf": token[:-2] + "xx"})
    assert wrong.status_code == 403
    form = await client.get("/signin")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    signed = await client.post("/signin", data={"key": key, "next": "/plans", "csrf": token})
    assert signed.status_code == 303 and signed.headers["location"] == "/plans"
    assert key not in client.cookies["baton_session"]


async def test_cookies_are_secure_behind_a_trusted_proxy_only(access: AccessApp) -> None:
    key = _owner(access)
    tls = {"X-Forwarded-Proto": "https"}
    async with _client(access) as untrusted:
        opened = await untrusted.get(f"/plans?code={await _code(untrusted, key)}", headers=tls)
        assert "secure" not in opened.headers["set-cookie"].lower()
    async with _client(access, "127.0.0.1, 10.0.0.0/8") as behind:  # ASGITransport: 127.0.0.1
        opened = await behind.get(f"/plans?code={await _code(behind, key)}", headers=tls)
        assert "secure" in opened.headers["set-cookie"].lower()


# --- throttles ------------------------------------------------------------------------------------


async def test_wrong_secrets_are_throttled_without_running_scrypt(
    client: httpx.AsyncClient, access: AccessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, key = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
    hashed = []
    real = ApiKey.matches
    monkeypatch.setattr(ApiKey, "matches", lambda self, s: hashed.append(1) or real(self, s))
    wrong = _bearer(key_string(key_id, "x" * 43))
    answers = [(await client.get("/v1/whoami", headers=wrong)).status_code for _ in range(12)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
    assert len(hashed) == 5  # past the allowance, no hash at all
    throttled = await client.get("/v1/whoami", headers=wrong)
    assert int(throttled.headers["Retry-After"]) >= 1
    assert (await client.get("/v1/whoami", headers=_bearer(key))).status_code == 429
    # a key checked before is answered from memory: a stranger's guesses do not lock it out
    _, other = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
    assert (await client.get("/v1/whoami", headers=_bearer(other))).status_code == 200


async def test_guesses_across_keys_are_throttled_per_address(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    """Spread over many keys, the guesses of one address still stop at its allowance (30);
    unknown key ids cost no hash and are not counted."""
    access.failures.by_address = Throttle(burst=30, refill_s=3600)  # no refill while hashing
    for _ in range(40):
        guess = _bearer(key_string(uuid4(), "y" * 43))
        assert (await client.get("/v1/whoami", headers=guess)).status_code == 401
    answers = []
    for _ in range(7):
        key_id, _key = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
        wrong = _bearer(key_string(key_id, "y" * 43))
        answers += [(await client.get("/v1/whoami", headers=wrong)).status_code for _ in range(5)]
    assert answers[:30] == [401] * 30 and set(answers[30:]) == {429}


# --- streams --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["revoked", "expired"])
async def test_an_open_stream_closes_when_its_key_stops_working(
    client: httpx.AsyncClient,
    access: AccessApp,
    monkeypatch: pytest.MonkeyPatch,
    ending: str,
) -> None:
    monkeypatch.setattr(deps, "RECHECK_S", 0.3)
    soon = datetime.now(UTC) + timedelta(seconds=1.5) if ending == "expired" else None
    key_id, key = access.create_key(DEFAULT_WORKSPACE, "viewer", None, soon, ROOT)

    async def revoke_later() -> None:
        await asyncio.sleep(1.0)
        access.revoke_key(key_id, "leaked", ROOT)

    task = asyncio.create_task(revoke_later()) if ending == "revoked" else None
    started = asyncio.get_running_loop().time()
    streamed = await asyncio.wait_for(client.get("/v1/stream", headers=_bearer(key)), 5)
    took = asyncio.get_running_loop().time() - started
    assert streamed.status_code == 200 and 1.0 <= took < 3.0
    if task is not None:
        await task
