"""The gateway's size checks, in process: a body over the installation's limit gets 413, a field
over its own limit 422 naming it, and nothing is stored for either."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from baton_common.limits import MiB, limits
from baton_common.store import MemoryEventStore
from baton_common.workspaces import DEFAULT_WORKSPACE
from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.domain import Principal
from baton_gateway.services import Services

ROOT = Principal(DEFAULT_WORKSPACE, "owner", "root")
STEP = {"id": "a", "tool": "mock.agent", "input": {"task": "noop"}}


RUNNING = uuid4()


class _Views:
    """One running execution of the default workspace, as the projector would show it."""

    async def get(self, execution_id: UUID) -> dict[str, Any] | None:
        if execution_id != RUNNING:
            return None
        return {"id": str(RUNNING), "workspace_id": DEFAULT_WORKSPACE, "status": "running"}


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore("gateway")


@pytest.fixture
async def client(store: MemoryEventStore) -> AsyncIterator[httpx.AsyncClient]:
    access = AccessApp(store, None)
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    _, key = access.create_key(DEFAULT_WORKSPACE, "owner", None, None, ROOT)
    services = Services(intake=IntakeApp(store, None), reader=_Views(), access=access)
    transport = httpx.ASGITransport(app=create_app(services))
    auth = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://g", headers=auth) as http:
        yield http


def _stored(store: MemoryEventStore) -> list[str]:
    return [e.type for _, e in store.notifications(0, 1000) if e.type.startswith("execution.")]


async def test_a_body_over_the_limit_gets_413_and_nothing_is_stored(
    client: httpx.AsyncClient, store: MemoryEventStore
) -> None:
    body: dict[str, Any] = {"plan": {"steps": [STEP]}, "inputs": {"blob": "x" * (3 * MiB)}}
    answer = await client.post("/v1/executions", json=body)
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the request body is 3 MiB, the limit is 2 MiB"
    assert _stored(store) == []


async def test_inputs_over_their_limit_get_422_naming_the_field(
    client: httpx.AsyncClient, store: MemoryEventStore
) -> None:
    body = {"plan": {"steps": [STEP]}, "inputs": {"blob": "x" * 1_258_291}}
    answer = await client.post("/v1/executions", json=body)
    assert answer.status_code == 422
    assert answer.json() == {"detail": "inputs is 1.2 MiB, the limit is 256 KiB", "field": "inputs"}
    assert _stored(store) == []
    small = await client.post("/v1/executions", json={"plan": {"steps": [STEP]}, "inputs": {}})
    assert small.status_code == 202 and _stored(store) == ["execution.requested"]


async def test_a_plan_over_its_limit_gets_422_naming_the_field(
    client: httpx.AsyncClient, store: MemoryEventStore
) -> None:
    big = {**STEP, "input": {"task": "x" * limits().plan}}
    answer = await client.post("/v1/executions", json={"plan": {"steps": [big]}})
    assert answer.status_code == 422 and answer.json()["field"] == "plan"
    assert answer.json()["detail"].startswith("plan is 256.1 KiB, the limit is 256 KiB")
    assert _stored(store) == []


async def test_a_context_value_over_its_limit_gets_422_naming_it(
    client: httpx.AsyncClient, store: MemoryEventStore
) -> None:
    execution = str(RUNNING)
    value = {"value": "x" * limits().context_value}
    answer = await client.put(f"/v1/executions/{execution}/context/k", json=value)
    assert answer.status_code == 422 and answer.json()["field"] == "value"
    assert answer.json()["detail"] == "value is 65,538 bytes, the limit is 65,536 bytes"
    assert _stored(store) == []


async def test_replaying_dead_letter_zero_is_a_clear_422(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/deadletters/0/replay")
    assert answer.status_code == 422
    assert "seq" in answer.json()["detail"]
