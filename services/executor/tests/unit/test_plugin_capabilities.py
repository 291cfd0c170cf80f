"""A plugin's tool gets what its plugin declares and the workspace grants, nothing more."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from baton_common import contracts as c
from baton_common import discovery, followed
from baton_common.catalogue import Catalogue
from baton_common.discovery import CatalogueFollower
from baton_common.workspaces import WorkspacePolicy
from baton_executor.extensions import HookedInline
from baton_executor.tools.base import CapabilityRefused, ToolContext, ToolError
from baton_executor.worker import Worker


def ctx(capabilities: frozenset[str] | None, plugin: str | None = "p") -> ToolContext:
    return ToolContext(
        execution_id="e",
        step_id="s",
        attempt=1,
        idempotency_key="e:s",
        capabilities=capabilities,
        plugin=plugin,
    )


def test_no_network_capability_no_http_client() -> None:
    with pytest.raises(CapabilityRefused, match="lacks the capability 'network'") as refused:
        ctx(frozenset({"secrets"})).http()
    assert refused.value.retryable is False and refused.value.plugin == "p"
    assert "baton plugins enable p --grant network" in str(refused.value)


async def test_network_capability_or_an_engine_tool_gets_the_guarded_client() -> None:
    for capabilities in (frozenset({"network"}), None):
        async with ctx(capabilities).http(timeout=1) as client:
            assert client.timeout.connect == 1


def test_secrets_need_the_capability_and_the_operators_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db/x")
    monkeypatch.setenv("BATON_TOOL_SECRETS", "GITHUB_TOKEN, OTHER")
    with pytest.raises(CapabilityRefused, match=r"read the secret 'GITHUB_TOKEN'.*'secrets'"):
        ctx(frozenset({"network"})).secret("GITHUB_TOKEN")
    allowed = ctx(frozenset({"secrets"}))
    assert allowed.secret("GITHUB_TOKEN") == "t0ken" and allowed.secret("OTHER") is None
    with pytest.raises(ToolError, match="not on this installation's BATON_TOOL_SECRETS"):
        allowed.secret("DATABASE_URL")
    with pytest.raises(ToolError, match="BATON_TOOL_SECRETS"):
        ctx(None).secret("DATABASE_URL")  # the list binds the engine's own tools too


def _catalogue() -> c.CatalogueChanged:
    def tool(name: str, origin: str) -> dict[str, Any]:
        spec = {"name": name, "description": "d", "input_schema": {}, "output_schema": {}}
        return {"spec": spec, "origin": origin, "implementation": {"entry_point": "m:T"}}

    return c.CatalogueChanged(
        workspace_id=c.SYSTEM_WORKSPACE,
        aggregate_id=discovery.CATALOGUE_ID,
        digest="d1",
        tools=[
            tool("gh.issue", "plugin:baton-gh"),
            tool("bare.tool", "plugin:baton-bare"),
            tool("agent.x", "agents:agents/x.yaml"),
        ],
        plugins=[
            {
                "name": "gh",
                "package": "baton-gh",
                "capabilities": ["network", "secrets"],
                "hooks": ["before_step"],
            }
        ],
        broken=[],
        scanned_by="test",
    )


async def test_a_tools_capabilities_come_from_its_plugin_and_the_workspace() -> None:
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())
    followed.FOLLOWER[:] = [follower]
    policy = WorkspacePolicy(plugins={"gh": ["network"]})  # secrets declared, not granted now
    worker = SimpleNamespace(
        hooks=SimpleNamespace(policies=SimpleNamespace(get=lambda _ws: policy))
    )
    try:
        follower.apply(_catalogue())

        async def caps(tool: str) -> Any:
            return await Worker._capabilities(worker, tool, "ws")  # type: ignore[arg-type]

        assert await caps("gh.issue") == (frozenset({"network"}), "gh")
        assert await caps("bare.tool") == (frozenset(), "baton-bare")  # declares nothing
        assert await caps("agent.x") == (None, None)  # the operator's own agent file
        assert await caps("http.request") == (None, None)  # a built-in
    finally:
        followed.FOLLOWER.clear()


def test_inline_steps_go_to_workers_where_a_plugin_watches_steps_without_importing_it() -> None:
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())
    followed.FOLLOWER[:] = [follower]
    policies: dict[str, WorkspacePolicy] = {
        "on": WorkspacePolicy(plugins={"gh": ["network", "secrets"]}),
        "short": WorkspacePolicy(plugins={"gh": ["network"]}),  # not run: a grant is missing
        "off": WorkspacePolicy(),
    }
    inline = SimpleNamespace(accepts=lambda _call: True)
    hooked = HookedInline(inline, SimpleNamespace(get=policies.__getitem__))  # type: ignore[arg-type]
    try:
        follower.apply(_catalogue())

        def accepts(ws: str) -> bool:
            return hooked.accepts(SimpleNamespace(workspace_id=ws))

        # Read from the catalogue's description: no such package is even installed here.
        assert not accepts("on") and accepts("short") and accepts("off")
    finally:
        followed.FOLLOWER.clear()
