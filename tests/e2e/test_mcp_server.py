"""Baton as an MCP server, driven by the official SDK's clients on the engine as processes:
``baton mcp serve`` over stdio (the handshake era, as desktop clients speak it, and the
2026-07-28 era) and the gateway's ``/mcp`` over streamable HTTP (auth, roles, the same tools)."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx2
import mcp_types as types
import pytest
from baton_common.testing import until
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

pytestmark = [
    pytest.mark.e2e,
    # handshake-era clients (most desktop clients) subscribe with resources/subscribe on purpose
    pytest.mark.filterwarnings("ignore:resources/subscribe is removed"),
]

BATON = str(Path(sys.executable).parent / "baton")
TOOLS = {"plan", "run", "status", "list_executions", "approve", "reject", "cancel"}
GATED = {
    "steps": [
        {"id": "look", "tool": "mock.agent", "input": {"task": "look", "output": "seen"}},
        {
            "id": "pay",
            "tool": "mock.agent",
            "input": {"task": "pay", "output": "paid"},
            "depends_on": ["look"],
            "requires_approval": True,
        },
    ]
}


def stdio(engine: Engine, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=BATON, args=["mcp", "serve"], env={**engine.env, **env})


def answer(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


@asynccontextmanager
async def handshake_session(engine: Engine, updates: list[str]) -> AsyncIterator[ClientSession]:
    """A handshake-era session (``initialize``, ``resources/subscribe``) with ``baton mcp
    serve``; the URIs of ``notifications/resources/updated`` land in ``updates``."""

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    async with (
        stdio_client(stdio(engine)) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()
        yield session


async def pending_gate(call: Any, execution_id: str) -> dict[str, Any]:
    """The execution's first pending approval, once ``status`` shows one."""
    found: list[dict[str, Any]] = []

    async def gated() -> bool:
        view = answer(await call("status", {"execution_id": execution_id}))
        found[:] = view["pending_approvals"]
        return bool(found)

    await until(gated, "a pending approval in status", timeout=60)
    return found[0]


async def ends(call: Any, execution_id: str, status: str = "succeeded") -> dict[str, Any]:
    views: list[dict[str, Any]] = []

    async def ended() -> bool:
        views.append(answer(await call("status", {"execution_id": execution_id})))
        return bool(views[-1]["status"] in ("succeeded", "failed", "cancelled"))

    await until(ended, f"execution {execution_id} to end", timeout=60)
    assert views[-1]["status"] == status, views[-1]
    return views[-1]


async def test_baton_mcp_serve_lists_runs_watches_and_approves_over_stdio(
    engine: Engine,
) -> None:
    updates: list[str] = []
    async with handshake_session(engine, updates) as session:
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        run_tool = next(t for t in listed.tools if t.name == "run")
        assert run_tool.description and "request in words or a plan" in run_tool.description
        assert run_tool.input_schema["properties"]["plan"]["description"]

        started = answer(await session.call_tool("run", {"plan": GATED}))
        eid, uri = started["id"], started["resource"]
        assert uri == f"baton://executions/{eid}" and started["created"] is True
        await session.subscribe_resource(uri)

        gate = await pending_gate(session.call_tool, eid)
        assert gate["step"] == "pay" and gate["tool"] == "mock.agent"
        listed_runs = answer(await session.call_tool("list_executions", {"limit": 50}))
        assert eid in [item["id"] for item in listed_runs["items"]]

        decided = answer(await session.call_tool("approve", {"approval_id": gate["approval_id"]}))
        assert decided["approval"]["status"] == "granted", decided
        view = await ends(session.call_tool, eid)
        assert view["steps"]["pay"]["output"]["result"] == "paid"

        read = await session.read_resource(uri)
        content = read.contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert content.mime_type == "application/json"
        assert json.loads(content.text)["status"] == "succeeded"
        await until(lambda: uri in updates, "notifications/resources/updated for the execution")


async def test_the_2026_era_client_hears_of_changes_through_listen(engine: Engine) -> None:
    async with Client(stdio(engine)) as client:
        assert client.protocol_version == "2026-07-28"
        started = answer(await client.call_tool("run", {"plan": GATED}))
        async with client.listen(resource_subscriptions=[started["resource"]]) as changes:
            gate = await pending_gate(client.call_tool, started["id"])
            reason = {"approval_id": gate["approval_id"], "reason": "not today"}
            assert answer(await client.call_tool("reject", reason))["approval"]["status"] == (
                "rejected"
            )
            async for event in changes:  # at least one change was told
                assert getattr(event, "uri", None) == started["resource"]
                break
        await ends(client.call_tool, started["id"], "failed")


async def test_bad_input_is_a_tool_error_with_the_gateways_reason(engine: Engine) -> None:
    async with Client(stdio(engine)) as client:
        missing = "00000000-0000-4000-8000-000000000000"
        text = error_text(await client.call_tool("status", {"execution_id": missing}))
        assert text.endswith(f"404: no execution {missing}")
        bad_plan = {"steps": [{"id": "a", "tool": "no.such_tool"}]}
        assert "plan invalid" in error_text(await client.call_tool("run", {"plan": bad_plan}))
        assert "execution_id" in error_text(
            await client.call_tool("status", {"execution_id": "not-an-id"})
        )
        text = error_text(await client.call_tool("run", {}))
        assert "exactly one of" in text and "Traceback" not in text
    async with Client(stdio(engine, BATON_API_KEY="bk_not-a-key")) as client:
        assert "401: " in error_text(await client.call_tool("list_executions", {}))


def key_of(engine: Engine, role: str, workspace: str = "default") -> str:
    made = engine.http.post(
        f"{engine.url}/v1/workspaces/{workspace}/keys", json={"role": role, "name": f"mcp-{role}"}
    )
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def over_http(engine: Engine, key: str) -> Client:
    """A 2026-era client of the gateway's ``/mcp``, calling with ``key``."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return Client(streamable_http_client(f"{engine.url}/mcp", http_client=http))


async def test_mcp_on_the_gateway_needs_a_key(engine: Engine) -> None:
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=30) as http:
        bare = await http.post(f"{engine.url}/mcp", json=hello)
        assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == "Bearer"
        assert "missing API key" in bare.json()["detail"]
        wrong = await http.post(
            f"{engine.url}/mcp", json=hello, headers={"Authorization": "Bearer bk_nope"}
        )
        assert wrong.status_code == 401
    doc = engine.http.get(f"{engine.url}/openapi.json").json()
    assert {"get", "post", "delete"} <= set(doc["paths"]["/mcp"])


async def test_mcp_on_the_gateway_runs_watches_and_approves(engine: Engine) -> None:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {engine.token}"}, timeout=60)
    async with (
        streamable_http_client(f"{engine.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        await session.initialize()  # the handshake era, as desktop clients speak it
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        started = answer(await session.call_tool("run", {"plan": GATED}))
        await session.subscribe_resource(started["resource"])
        gate = await pending_gate(session.call_tool, started["id"])
        decided = answer(await session.call_tool("approve", {"approval_id": gate["approval_id"]}))
        assert decided["approval"]["status"] == "granted", decided
        await ends(session.call_tool, started["id"])
        read_back = (await session.read_resource(started["resource"])).contents[0]
        assert isinstance(read_back, types.TextResourceContents)
        assert json.loads(read_back.text)["steps"]["pay"]["output"]["result"] == "paid"
        await until(lambda: started["resource"] in updates, "resources/updated over HTTP")


async def test_the_keys_role_and_workspace_hold_over_mcp(engine: Engine) -> None:
    started = engine.http.post(f"{engine.url}/v1/executions", json={"plan": GATED}).json()
    async with over_http(engine, key_of(engine, "viewer")) as viewer:
        gate = await pending_gate(viewer.call_tool, started["id"])  # a viewer may read
        refused = error_text(
            await viewer.call_tool("approve", {"approval_id": gate["approval_id"]})
        )
        assert "403: deciding approvals needs the role" in refused and "'viewer'" in refused
        assert "403" in error_text(await viewer.call_tool("run", {"plan": GATED}))
    made = engine.http.post(
        f"{engine.url}/v1/workspaces", json={"name": f"mcp {uuid.uuid4().hex[:6]}"}
    )
    assert made.status_code == 201, made.text
    async with over_http(engine, key_of(engine, "owner", made.json()["id"])) as stranger:
        text = error_text(await stranger.call_tool("status", {"execution_id": started["id"]}))
        assert text.endswith(f"404: no execution {started['id']}")
        listed = answer(await stranger.call_tool("list_executions", {}))
        assert started["id"] not in [item["id"] for item in listed["items"]]
    engine.http.post(f"{engine.url}/v1/executions/{started['id']}/cancel")


async def test_a_session_belongs_to_the_key_that_opened_it(engine: Engine) -> None:
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with httpx2.AsyncClient(timeout=30) as http:
        opened = await http.post(
            f"{engine.url}/mcp",
            json=hello,
            headers={**accept, "Authorization": f"Bearer {engine.token}"},
        )
        assert opened.status_code == 200, opened.text
        session = {**accept, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
        owner = {"Authorization": f"Bearer {engine.token}"}
        ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (
            await http.post(f"{engine.url}/mcp", json=ready, headers={**session, **owner})
        ).status_code == 202
        mine = await http.post(f"{engine.url}/mcp", json=listing, headers={**session, **owner})
        assert mine.status_code == 200 and '"name":"approve"' in mine.text.replace(" ", "")
        other = {"Authorization": f"Bearer {key_of(engine, 'viewer')}"}
        taken = await http.post(f"{engine.url}/mcp", json=listing, headers={**session, **other})
        assert taken.status_code == 404
