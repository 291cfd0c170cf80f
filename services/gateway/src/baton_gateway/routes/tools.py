"""Tools, agents and plugins: the catalogue with origins and figures, a rescan without restart,
the agent registry's figures, and which plugins a workspace runs."""

from __future__ import annotations

import functools
from typing import Any, Literal

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.discovery import BUILTIN_NAMES, refresh_subject
from baton_common.followed import FOLLOWER, current_catalogue
from baton_common.plugins import CAPABILITIES
from baton_common.settings import Settings
from baton_common.store import run_sync
from baton_common.toolstats import AgentStats, StatsReader
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Reader, allowed, policy_of, services_of
from baton_gateway.routes.rpc import ask
from baton_gateway.services import Services

router = APIRouter(tags=["tools"])
Manager = Depends(allowed("manage", "changing tools and plugins"))


@functools.cache
def _stats() -> StatsReader:
    settings = Settings()
    return StatsReader(settings.database_url, settings.db_schema, ttl_s=0.0)


async def _figures(workspace_id: str) -> dict[str, AgentStats]:
    return {s.name: s for s in await run_sync(_stats().get, workspace_id)}


def _origins() -> dict[str, dict[str, Any]]:
    event = current_catalogue()
    return {e["spec"]["name"]: e for e in (event.tools if event else [])}


async def _listing(who: Principal) -> dict[str, Any]:
    origins, figures, event = _origins(), await _figures(who.workspace_id), current_catalogue()
    tools = []
    for spec in DEFAULT_CATALOGUE.all():
        entry = origins.get(spec.name, {})
        if not _visible(entry, who.workspace_id):
            continue
        stats = figures.get(spec.name) or AgentStats(name=spec.name)
        tools.append(
            {
                **spec.model_dump(mode="json"),
                "origin": "builtin" if spec.name in BUILTIN_NAMES else entry.get("origin"),
                "implementation": _kind(entry.get("implementation")),
                "stats": stats.model_dump(mode="json", exclude={"name", "workspace_id"}),
            }
        )
    return {
        "tools": tools,
        "broken": event.broken if event else [],
        "plugins": event.plugins if event else [],
        "digest": event.digest if event else None,
    }


def _visible(entry: dict[str, Any], workspace_id: str) -> bool:
    """An MCP server's tools are its workspace's (origin ``mcp:<workspace>:<server>``)."""
    origin = str(entry.get("origin") or "")
    return not origin.startswith("mcp:") or origin.split(":")[1] == workspace_id


def _kind(impl: dict[str, Any] | None) -> str | None:
    return next(iter(impl), None) if impl else None


@router.get("/v1/tools")
async def tools(who: Principal = Reader) -> dict[str, Any]:
    """Every tool with its origin, schemas and figures; broken sources with their reason."""
    return await _listing(who)


@router.get("/v1/tools/{name}")
async def tool(name: str, who: Principal = Reader) -> dict[str, Any]:
    found = next((t for t in (await _listing(who))["tools"] if t["name"] == name), None)
    if found is None:
        raise HTTPException(404, f"no tool {name!r}; GET /v1/tools lists them")
    return found


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")


@router.post("/v1/tools/refresh")
async def refresh(
    _body: Refresh | None = None, who: Principal = Manager, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Scan plugins and the agents folder again (a worker does it and publishes the result)."""
    subject = refresh_subject(s.bus.settings.subject_root)
    reply = await ask(s, subject, Refresh(), _Reply, "worker", timeout_s=30)
    if reply.error:
        raise HTTPException(503, f"the scan failed: {reply.error}")
    event = c.CatalogueChanged.model_validate(reply.model_dump(exclude={"error"}))
    if FOLLOWER:
        FOLLOWER[0].apply(event)  # this process validates with it from the next request on
    listing = await _listing(who)
    return {"digest": event.digest, "tools": len(listing["tools"]), "broken": event.broken}


class _Reply(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: str | None = None


@router.get("/v1/agents")
async def agents(who: Principal = Reader) -> dict[str, Any]:
    """The agent registry: each tool's calls, success rate, latency, retries, errors and cost
    in the caller's workspace (tools never called are listed with zero calls)."""
    figures = await _figures(who.workspace_id)
    rows = [figures.get(n) or AgentStats(name=n) for n in DEFAULT_CATALOGUE.names()]
    rows += [f for n, f in figures.items() if n not in DEFAULT_CATALOGUE]  # since removed
    return {"agents": [r.model_dump(mode="json", exclude={"workspace_id"}) for r in rows]}


@router.get("/v1/agents/{name}")
async def agent(name: str, who: Principal = Reader) -> dict[str, Any]:
    figures = await _figures(who.workspace_id)
    if name not in figures and name not in DEFAULT_CATALOGUE:
        raise HTTPException(404, f"no agent or tool {name!r}")
    stats = figures.get(name) or AgentStats(name=name)
    origin = "builtin" if name in BUILTIN_NAMES else _origins().get(name, {}).get("origin")
    return {**stats.model_dump(mode="json", exclude={"workspace_id"}), "origin": origin}


# --- plugins of a workspace -------------------------------------------------------------------------


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grant: list[Literal["network", "files", "secrets"]] = Field(
        default_factory=list, description=f"capabilities granted: any of {', '.join(CAPABILITIES)}"
    )


def _plugin(name: str) -> dict[str, Any]:
    event = current_catalogue()
    found = next((p for p in (event.plugins if event else []) if p["name"] == name), None)
    if found is None:
        raise HTTPException(
            404, f"no plugin {name!r} is installed; `baton plugins list` shows them"
        )
    return found


@router.get("/v1/plugins", tags=["plugins"])
async def plugins(who: Principal = Reader, s: Services = Depends(services_of)) -> dict[str, Any]:
    event = current_catalogue()
    policy = await policy_of(s, who.workspace_id)
    return {
        "plugins": [
            {
                **p,
                "enabled": p["name"] in policy.plugins,
                "granted": policy.plugins.get(p["name"], []),
            }
            for p in (event.plugins if event else [])
        ]
    }


@router.post("/v1/plugins/{name}/enable", tags=["plugins"])
async def enable(
    name: str, body: Grant, who: Principal = Manager, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Run the plugin's hooks in this workspace, granting the capabilities it declares."""
    needs = set(_plugin(name)["capabilities"])
    if missing := sorted(needs - set(body.grant)):
        raise HTTPException(
            422, f"plugin {name!r} needs {', '.join(missing)}: grant them to enable it"
        )
    policy = await policy_of(s, who.workspace_id)
    grants = {**policy.plugins, name: sorted(set(body.grant))}
    await run_sync(
        s.access.set_policy, who.workspace_id, policy.model_copy(update={"plugins": grants}), who
    )
    return {"name": name, "enabled": True, "granted": grants[name]}


@router.post("/v1/plugins/{name}/disable", tags=["plugins"])
async def disable(
    name: str, who: Principal = Manager, s: Services = Depends(services_of)
) -> dict[str, Any]:
    policy = await policy_of(s, who.workspace_id)
    if name not in policy.plugins:
        _plugin(name)  # 404 for a plugin neither installed nor enabled here
    grants = {k: v for k, v in policy.plugins.items() if k != name}
    await run_sync(
        s.access.set_policy, who.workspace_id, policy.model_copy(update={"plugins": grants}), who
    )
    return {"name": name, "enabled": False, "granted": []}
