"""``POST /v1/executions`` on its short path (issue 32): a submission that passes every check
skips FastAPI's dependency solving; every other request gets FastAPI's own answer, as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fastapi.routing
import httpx
import pytest
from baton_common.store import MemoryEventStore
from baton_common.workspaces import DEFAULT_WORKSPACE
from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.domain import Principal
from baton_gateway.routes.deps import services_of
from baton_gateway.services import Services

ROOT = Principal(DEFAULT_WORKSPACE, "owner", "root")
PLAN = {"plan": {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "noop"}}]}}


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FastAPI solved dependencies for (its own request handling)."""
    seen: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counted(*, request: Any, **kwargs: Any) -> Any:
        seen.append(request.url.path)
        return await solve(request=request, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    return seen


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[httpx.AsyncClient, AccessApp, fastapi.FastAPI]]:
    access = AccessApp(MemoryEventStore("gateway"), None)
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    app = create_app(Services(intake=IntakeApp(access.store, None), reader=None, access=access))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http, access, app


def _auth(access: AccessApp, role: str = "operator") -> dict[str, str]:
    _, key = access.create_key(DEFAULT_WORKSPACE, role, None, None, ROOT)
    return {"Authorization": f"Bearer {key}"}


async def test_a_valid_submission_takes_the_short_path_and_is_recorded(
    gateway: tuple[httpx.AsyncClient, AccessApp, fastapi.FastAPI], solved: list[str]
) -> None:
    http, access, _ = gateway
    auth = _auth(access)
    words = await http.post("/v1/executions", json={"request": "say hello"}, headers=auth)
    plan = await http.post("/v1/executions", json=PLAN, headers=auth | {"Idempotency-Key": "k"})
    again = await http.post("/v1/executions", json=PLAN, headers=auth | {"Idempotency-Key": "k"})
    assert (words.status_code, plan.status_code, again.status_code) == (202, 202, 200)
    assert again.json() == plan.json() | {"status": "existing", "created": False}
    assert set(plan.json()) == {"id", "status", "created", "links"}
    assert solved == []  # none of them went through FastAPI's dependency solving


async def test_every_refused_submission_gets_fastapis_answer(
    gateway: tuple[httpx.AsyncClient, AccessApp, fastapi.FastAPI], solved: list[str]
) -> None:
    http, access, _ = gateway
    auth = _auth(access)
    extra = await http.post("/v1/executions", json={**PLAN, "colour": "red"}, headers=auth)
    assert extra.status_code == 422 and extra.json()["problems"][0]["field"] == "colour"
    both = await http.post("/v1/executions", json={**PLAN, "request": "hi"}, headers=auth)
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    malformed = await http.post(
        "/v1/executions",
        content=b'{"request": ',
        headers=auth | {"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    assert len(solved) == 2  # the invalid bodies were answered by FastAPI's path
    # The caller is checked before the body, as FastAPI checks dependencies first.
    nobody = await http.post("/v1/executions", json={**PLAN, "colour": "red"})
    assert nobody.status_code == 401 and nobody.headers["WWW-Authenticate"] == "Bearer"
    viewer = await http.post("/v1/executions", json=PLAN, headers=_auth(access, "viewer"))
    assert viewer.status_code == 403
    bad_plan = {"plan": {"steps": [{"id": "a", "tool": "no.such.tool", "input": {}}]}}
    unknown = await http.post("/v1/executions", json=bad_plan, headers=auth)
    assert unknown.status_code == 422 and unknown.json()["problems"][0]["step"] == "a"


async def test_overridden_dependencies_and_other_content_types_take_fastapis_path(
    gateway: tuple[httpx.AsyncClient, AccessApp, fastapi.FastAPI], solved: list[str]
) -> None:
    http, access, app = gateway
    auth = _auth(access)
    text = await http.post(
        "/v1/executions",
        content=b'{"request": "say hello"}',
        headers=auth | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert text.status_code == 202 and solved == ["/v1/executions"]
    services = app.state.services
    app.dependency_overrides[services_of] = lambda: services
    assert (await http.post("/v1/executions", json=PLAN, headers=auth)).status_code == 202
    assert len(solved) == 2
