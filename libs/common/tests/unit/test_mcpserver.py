"""Baton's MCP server (``baton_common.mcpserver``) in process, over a recording backend: what
each tool asks of the HTTP API, refusals as tool errors, and change notifications. The doors
(stdio, the gateway's /mcp) are tested on the engine in tests/e2e/test_mcp_server.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from baton_common.mcpserver import BatonCallFailed, build_server, summary, uri_of
from mcp import Client

EID = "6f1e2f3a-0000-4000-8000-000000000001"
GATE = "6f1e2f3a-0000-4000-8000-0000000000aa"


class Recording:
    """Answers like the gateway would, and remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls.append((method, path, body, params))
        if path == f"/v1/executions/{EID}":
            gate = {"id": GATE, "status": "pending", "input": {"x": 1}}
            return {
                "id": EID,
                "status": "running",
                "steps": {"pay": {"tool": "t", "approval": gate}},
            }
        if path == "/v1/executions" and method == "POST":
            return {"id": EID, "status": "requested", "created": True}
        raise BatonCallFailed(f"404: nothing at {path}")


async def test_tools_call_the_api_as_the_caller_and_refusals_are_tool_errors() -> None:
    backend = Recording()
    async with Client(build_server(lambda _ctx: backend)) as client:
        started = await client.call_tool("run", {"request": "say hi", "idempotency_key": "k"})
        assert started.structured_content == {
            "id": EID,
            "status": "requested",
            "created": True,
            "resource": uri_of(EID),
        }
        assert backend.calls[-1] == (
            "POST",
            "/v1/executions",
            {"request": "say hi", "plan": None, "inputs": {}, "idempotency_key": "k"},
            None,
        )
        view = (await client.call_tool("status", {"execution_id": EID})).structured_content
        assert view and view["pending_approvals"][0]["approval_id"] == GATE
        refused = await client.call_tool("approve", {"approval_id": GATE, "comment": "ok"})
        assert refused.is_error and "404: nothing at /v1/approvals/" in str(refused.content)
        assert backend.calls[-1][2] == {"decision": "approve", "comment": "ok"}
        listed = await client.call_tool("list_executions", {"status": "running"})
        assert listed.is_error and backend.calls[-1][3] == {"status": "running", "limit": 20}


async def test_a_change_is_told_to_a_listener_of_the_execution() -> None:
    async def follow() -> AsyncIterator[str]:
        while True:  # the execution keeps changing until the test has heard of it
            await asyncio.sleep(0.05)
            yield EID

    async with Client(build_server(lambda _ctx: Recording(), follow)) as client:
        async with client.listen(resource_subscriptions=[uri_of(EID)]) as changes:
            async for event in changes:
                assert getattr(event, "uri", None) == uri_of(EID)
                break


def test_summary_lists_the_plan_review_and_step_gates_pending() -> None:
    view = {
        "plan_review": {"id": "r", "status": "pending", "message": "look"},
        "steps": {
            "a": {"tool": "t", "approval": {"id": "g", "status": "granted"}},
            "b": {"tool": "t", "approval": {"id": "h", "status": "pending", "input": {}}},
        },
    }
    assert [g["approval_id"] for g in summary(view)["pending_approvals"]] == ["r", "h"]
