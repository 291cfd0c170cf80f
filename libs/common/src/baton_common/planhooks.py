"""The plugins' hooks around a plan: ``before_plan`` and ``after_plan``.

Two services show plans to a workspace's plugins: the planner (plans it makes) and the gateway
(plans given directly, which skip the planner). Both call these, so a veto reads the same
wherever the plan came from. ``after_plan`` may amend the plan (the caller validates it again)
or veto it with a reason; a hook that raises or hangs is logged and skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from baton_common.plugins import plugin_host
from baton_common.workspaces import WorkspacePolicy

log = logging.getLogger(__name__)


class PlanVetoed(Exception):
    """A plugin's ``after_plan`` refused the plan; the message names the plugin and its reason."""


async def run_plan_hooks(
    policy: WorkspacePolicy, request: str, workspace_id: str, plan: dict[str, Any]
) -> dict[str, Any]:
    """The plan after the workspace's plugins saw it; ``PlanVetoed`` if one refused it."""
    host = plugin_host()
    if not policy.plugins or not host.names():
        return plan
    for outcome in await host.call(
        "after_plan", policy.plugins, plan=plan, request=request, workspace_id=workspace_id
    ):
        if outcome.veto is not None:
            raise PlanVetoed(f"vetoed by plugin {outcome.plugin}: {outcome.veto}")
        if outcome.error is not None:
            log.warning("after_plan hook failed: %s", outcome.error)
        elif isinstance(outcome.result, dict) and outcome.result.get("steps"):
            plan = outcome.result  # amended; validated again by the caller
    return plan


async def run_before_plan(
    policy: WorkspacePolicy, request: str, inputs: dict[str, Any], workspace_id: str
) -> None:
    host = plugin_host()
    if not policy.plugins or not host.names():
        return
    for outcome in await host.call(
        "before_plan", policy.plugins, request=request, inputs=inputs, workspace_id=workspace_id
    ):
        if outcome.error is not None:
            log.warning("before_plan hook failed: %s", outcome.error)
