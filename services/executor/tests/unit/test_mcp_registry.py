"""The MCP registry's decisions without a server: what a listing means, and the aggregate."""

from __future__ import annotations

from typing import Any

import pytest
from baton_common import contracts as c
from baton_common.discovery import Scan
from baton_common.egress import EgressGuard
from baton_common.sealing import Sealer
from baton_common.store import MemoryEventStore
from baton_executor.mcp.connect import check_command, endpoint_of
from baton_executor.mcp.domain import (
    BadServer,
    McpServer,
    checked_tools,
    server_id,
    side_effect_of,
    spec_of,
)
from baton_executor.mcp.registry import McpRegistry


def _tool(name: str = "lookup", **extra: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {"name": name, "description": "Look up a city", "inputSchema": schema, **extra}


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        ({"readOnlyHint": True}, "read"),
        ({"destructiveHint": True}, "critical"),
        ({"readOnlyHint": True, "destructiveHint": True}, "critical"),
        ({}, "write"),
        (None, "write"),
    ],
)
def test_the_side_effect_class_comes_from_the_annotations(hints: Any, expected: str) -> None:
    assert side_effect_of(hints) == expected


def test_a_listed_tool_becomes_a_spec_named_after_its_server() -> None:
    spec = spec_of("weather", _tool(annotations={"readOnlyHint": True}))
    assert spec.name == "mcp.weather.lookup"
    assert spec.side_effect == "read"
    assert spec.text_field == "city"  # the one required string: the planner fills it from words
    assert spec.output_schema == {"type": "object"}
    assert spec_of("weather", _tool(), "critical").side_effect == "critical"  # the override


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        (
            [_tool(inputSchema={"type": "object", "properties": {"n": {"type": "nope"}}})],
            "inputSchema",
        ),
        ([_tool(outputSchema={"type": "array"})], "outputSchema"),
        ([_tool(inputSchema=None)], "missing"),
        ([_tool(name="a b")], "tool name"),
        ([_tool(), _tool()], "listed twice"),
    ],
)
def test_a_tool_that_cannot_join_the_catalogue_refuses_the_whole_server(
    tools: list[dict[str, Any]], words: str
) -> None:
    with pytest.raises(BadServer, match=words):
        checked_tools("weather", tools)


def test_a_server_name_must_fit_a_tool_name() -> None:
    with pytest.raises(BadServer, match="name"):
        checked_tools("Weather Service", [_tool()])


def test_only_commands_the_operator_listed_may_be_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_MCP_COMMANDS", "npx, /usr/bin/python3")
    check_command(["npx", "-y", "server"])
    check_command(["/usr/bin/python3", "server.py"])
    with pytest.raises(BadServer, match="BATON_MCP_COMMANDS") as refused:
        check_command(["/bin/sh", "-c", "id"])
    assert refused.value.status == 403
    monkeypatch.delenv("BATON_MCP_COMMANDS")
    with pytest.raises(BadServer, match="allows nothing"):
        check_command(["npx"])


def test_secrets_are_sealed_in_the_event_and_opened_for_the_connection() -> None:
    sealer = Sealer.in_memory()
    event = c.McpServerRegistered(
        workspace_id="ws",
        aggregate_id=server_id("ws", "crm"),
        name="crm",
        transport="http",
        url="https://crm.example.com/mcp",
        headers={"X-Team": "a"},
        secret_headers={"Authorization": sealer.seal("Bearer s3cret")},
    )
    assert "s3cret" not in event.model_dump_json()
    endpoint = endpoint_of(event, sealer.unseal)
    assert endpoint.headers == {"X-Team": "a", "Authorization": "Bearer s3cret"}


def test_the_registry_folds_servers_and_adds_their_tools_to_a_scan() -> None:
    store = MemoryEventStore()
    registry = McpRegistry(store, Sealer.in_memory(), EgressGuard())
    server = McpServer(server_id("ws", "weather"))
    server.trigger(
        c.McpServerRegistered,
        workspace_id="ws",
        name="weather",
        transport="http",
        url="https://w.example.com/mcp",
        tools=[_tool()],
    )
    server.trigger(c.McpSideEffectSet, workspace_id="ws", tool="lookup", side_effect="critical")
    from baton_common.store import Commit

    store.commit(Commit(events=server.collect()))
    registry.catch_up()
    assert registry.find("ws", "weather").view()["tools"][0]["side_effect"] == "critical"
    with pytest.raises(Exception, match="no MCP server"):
        registry.find("other", "weather")  # another workspace's is not found
    found = Scan()
    registry.add_to(found)
    [entry] = found.tools
    assert entry["spec"]["name"] == "mcp.weather.lookup"
    assert entry["implementation"] == {"mcp": {"server_id": str(server.id), "tool": "lookup"}}
    assert "url" not in str(entry["implementation"])  # the worker reads it from the store
