"""The HTTP app in process, on the in-memory store: who may submit, and how keys are answered
(from memory when checked before, from the store otherwise)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from baton_common.store import MemoryEventStore
from baton_common.workspaces import DEFAULT_WORKSPACE
from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.domain import Principal
from baton_gateway.services import Services

ROOT = Principal(DEFAULT_WORKSPACE, "owner", "root")
PLAN = {"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "noop"}}]}}


@pytest.fixture
def access() -> AccessApp:
    app = AccessApp(MemoryEventStore("gateway"), None)
    app.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    return app


@pytest.fixture
async def client(access: AccessApp) -> AsyncIterator[httpx.AsyncClient]:
    services = Services(intake=IntakeApp(access.store, None), reader=None, access=access)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def _submit(client: httpx.AsyncClient, **kwargs: Any) -> httpx.Response:
    return await client.post("/v1/executions", json=PLAN, **kwargs)


async def test_a_key_submits_and_a_revoked_one_stops_at_once(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    key_id, key = access.create_key(DEFAULT_WORKSPACE, "operator", "ci", None, ROOT)
    auth = {"Authorization": f"Bearer {key}"}
    assert (await _submit(client, headers=auth)).status_code == 202  # checked: from the store
    assert access.known(key) is not None
    assert (await _submit(client, headers=auth)).status_code == 202  # from memory
    access.revoke_key(key_id, "leaked", ROOT)
    refused = await _submit(client, headers=auth)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert (await _submit(client)).status_code == 401


async def test_a_role_without_run_is_refused_and_a_repeated_key_is_the_same_execution(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    _, viewer = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
    for _ in range(2):  # the second time from memory: the same answer
        assert (
            await _submit(client, headers={"Authorization": f"Bearer {viewer}"})
        ).status_code == 403
    _, key = access.create_key(DEFAULT_WORKSPACE, "operator", None, None, ROOT)
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "once"}
    first, again = await _submit(client, headers=auth), await _submit(client, headers=auth)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["status"] == "existing"


async def test_a_dashboard_session_changes_nothing_without_the_csrf_header(
    client: httpx.AsyncClient, access: AccessApp
) -> None:
    _, key = access.create_key(DEFAULT_WORKSPACE, "operator", None, None, ROOT)
    made = await client.post("/v1/signin-codes", headers={"Authorization": f"Bearer {key}"})
    opened = await client.get(f"/plans?code={made.json()['code']}")
    assert opened.status_code == 303  # to the clean URL, with the session's cookie
    assert key not in client.cookies["baton_session"]
    refused = await _submit(client)
    assert refused.status_code == 403 and "x-baton-csrf" in refused.json()["detail"]
    assert (await _submit(client, headers={"X-Baton-CSRF": "1"})).status_code == 202
