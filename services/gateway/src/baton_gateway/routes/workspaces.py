"""Workspaces, members, policy and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from baton_common.erasure import WorkspaceBusy
from baton_common.retention import RetentionSettings
from baton_common.store import run_sync
from baton_common.workspaces import DEFAULT_WORKSPACE, Role, WorkspacePolicy
from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import Conflict, Invalid, Principal
from baton_gateway.routes.deps import Reader, caller, policy_of, services_of
from baton_gateway.services import Services

router = APIRouter(tags=["workspaces"])


class WorkspaceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["Team Alpha"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str | None = Field(None, min_length=1, max_length=100)
    expires_at: datetime | None = Field(None, description="ISO-8601 with a time zone")


class MemberSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


class KeyRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=2000)


@router.get("/v1/whoami")
async def whoami(who: Principal = Depends(caller)) -> dict[str, Any]:
    """The calling key: its workspace, role and name."""
    return {
        "workspace_id": who.workspace_id,
        "role": who.role,
        "name": who.name,
        "key_id": str(who.key_id) if who.key_id else None,
    }


@router.post("/v1/workspaces", status_code=201)
async def create_workspace(
    body: WorkspaceCreate, who: Principal = Depends(caller), s: Services = Depends(services_of)
) -> dict[str, str]:
    workspace_id = await run_sync(s.access.create_workspace, body.name, who)
    return {"id": workspace_id, "name": body.name}


@router.get("/v1/workspaces")
async def list_workspaces(
    who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Every workspace for an owner of the default workspace; the caller's own otherwise."""
    everyone = who.workspace_id == "default" and who.can("own")
    rows = await s.reader.workspaces(None if everyone else who.workspace_id)
    return {"items": [{**r, "created_at": r["created_at"].isoformat()} for r in rows]}


@router.get("/v1/workspaces/{workspace_id}")
async def get_workspace(
    workspace_id: str, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    agg = await run_sync(s.access.visible_workspace, workspace_id, who)
    return {
        "id": agg.workspace_id,
        "name": agg.name,
        "members": [{"user": u, "role": r} for u, r in sorted(agg.members.items())],
        "policy": agg.policy,
    }


@router.put("/v1/workspaces/{workspace_id}/members/{user}")
async def set_member(
    workspace_id: str,
    user: str,
    body: MemberSet,
    who: Principal = Depends(caller),
    s: Services = Depends(services_of),
) -> dict[str, str]:
    await run_sync(s.access.set_member, workspace_id, user, body.role, who)
    return {"user": user, "role": body.role}


@router.delete("/v1/workspaces/{workspace_id}/members/{user}", status_code=204)
async def remove_member(
    workspace_id: str,
    user: str,
    who: Principal = Depends(caller),
    s: Services = Depends(services_of),
) -> Response:
    await run_sync(s.access.remove_member, workspace_id, user, who)
    return Response(status_code=204)


@router.get("/v1/workspaces/{workspace_id}/policy", response_model=WorkspacePolicy)
async def get_policy(
    workspace_id: str, who: Principal = Reader, s: Services = Depends(services_of)
) -> WorkspacePolicy:
    await run_sync(s.access.visible_workspace, workspace_id, who)
    policy: WorkspacePolicy = await policy_of(s, workspace_id)
    return policy


@router.put("/v1/workspaces/{workspace_id}/policy", response_model=WorkspacePolicy)
async def set_policy(
    workspace_id: str,
    body: WorkspacePolicy,
    who: Principal = Depends(caller),
    s: Services = Depends(services_of),
) -> WorkspacePolicy:
    """Replace the workspace's tool allow/deny lists, quotas and retention."""
    if problem := RetentionSettings().problem(body.retention_days):
        raise Invalid(problem)
    await run_sync(s.access.set_policy, workspace_id, body, who)
    return body


@router.delete("/v1/workspaces/{workspace_id}")
async def delete_workspace(
    workspace_id: str, who: Principal = Depends(caller), s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Remove the workspace and all its data (events, views, archives): what was removed, by
    table. Its admin or the installation's owner; never the default workspace; not while
    executions of it are in flight."""
    await run_sync(s.access.managed, workspace_id, who)
    if workspace_id == DEFAULT_WORKSPACE:
        raise Conflict("the default workspace cannot be deleted")
    if s.archives is None:
        raise HTTPException(503, "this gateway has no database to delete from")
    try:
        removed = await run_sync(s.archives.delete_workspace, workspace_id)
    except WorkspaceBusy as exc:
        raise Conflict(str(exc)) from None
    s.access.forget_workspace(workspace_id)
    return {"id": workspace_id, "deleted": True, "removed": removed}


@router.post("/v1/workspaces/{workspace_id}/keys", status_code=201)
async def create_key(
    workspace_id: str,
    body: KeyCreate,
    who: Principal = Depends(caller),
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """A new key; the key itself is shown here once and never again (only its hash is kept)."""
    key_id, key = await run_sync(
        s.access.create_key, workspace_id, body.role, body.name, body.expires_at, who
    )
    return {
        "id": str(key_id),
        "key": key,
        "workspace_id": workspace_id,
        "role": body.role,
        "name": body.name or f"key-{key_id.hex[:8]}",
        "expires_at": body.expires_at.isoformat() if body.expires_at else None,
    }


@router.get("/v1/workspaces/{workspace_id}/keys")
async def list_keys(
    workspace_id: str, who: Principal = Depends(caller), s: Services = Depends(services_of)
) -> dict[str, Any]:
    """The workspace's keys (never the keys themselves), newest first."""
    await run_sync(s.access.managed, workspace_id, who)
    rows = await s.reader.keys(workspace_id)
    return {"items": [_iso(r) for r in rows]}


@router.delete("/v1/keys/{key_id}", status_code=204)
async def revoke_key(
    key_id: UUID,
    body: KeyRevoke | None = None,
    who: Principal = Depends(caller),
    s: Services = Depends(services_of),
) -> Response:
    await run_sync(s.access.revoke_key, key_id, body.reason if body else None, who)
    return Response(status_code=204)


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v)
        for k, v in row.items()
    }
