"""Plans given directly skip the planner, so the gateway shows them to the workspace's plugins
(``after_plan``) before recording them: a veto is a 422 with the plugin's reason, an amended plan
is validated again and recorded instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.planhooks import PlanVetoed, run_plan_hooks
from baton_common.plans import validate_plan
from baton_common.sealing import Sealer
from baton_common.secretinputs import has_secrets, seal_inputs, seal_request
from baton_common.store import run_sync
from baton_common.workspaces import WorkspacePolicy
from fastapi import HTTPException

from baton_gateway.offload import off_loop


async def vetted(
    data: dict[str, Any], policy: WorkspacePolicy, workspace_id: str
) -> dict[str, Any]:
    """``data`` (a prepared execution request) once the plugins saw its plan, if it has one."""
    plan = data.get("plan")
    if plan is None or not policy.plugins:
        return data
    try:
        seen = await run_plan_hooks(policy, data.get("request") or "", workspace_id, plan)
    except PlanVetoed as exc:
        raise HTTPException(422, str(exc)) from None
    if seen is not plan:
        checked = await off_loop(validate_plan, seen, DEFAULT_CATALOGUE, data.get("inputs") or {})
        data["plan"] = checked.model_dump(mode="json", exclude_defaults=True)
    return data


async def sealed(
    data: dict[str, Any], sealer: Sealer, secret_inputs: Sequence[str] = ()
) -> dict[str, Any]:
    """``data`` with its secret tool inputs sealed (``secretinputs``): the last step before it
    becomes an event, after every check and plugin saw the plan (they see the clear values;
    nothing stored does). Here because the gateway is where a given plan first becomes an event
    and it knows the catalogue's schemas. ``secret_inputs``: inputs a saved plan run by name
    sends to secret fields (the planner says which when the gateway checks the ``plan_ref``)."""
    if secret_inputs:
        await run_sync(seal_inputs, data.get("inputs"), secret_inputs, sealer.seal)
    if not has_secrets(data, DEFAULT_CATALOGUE):
        return data
    return await run_sync(seal_request, data, DEFAULT_CATALOGUE, sealer.seal)
