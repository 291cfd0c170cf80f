"""Which planner a deployment plans with, picked from its environment.

An OpenAI-compatible model when BATON_LLM_MODEL is set (with OPENAI_BASE_URL and/or
OPENAI_API_KEY), else Gemini when GEMINI_API_KEY (or GOOGLE_API_KEY) is set, else the offline
planner. An unreachable model is an error unless BATON_PLANNER_FALLBACK=offline: a deployment
that configured a model should not silently get worse plans. BATON_PLANNER_MAX_REPAIRS (default
2) is how often an invalid plan goes back to the model with the validator's errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolStats
from baton_common.openaichat import model_from_env

from baton_planner.modelplanner import ModelPlanner
from baton_planner.offline import OfflinePlanner, PlanMemory
from baton_planner.planners import FallbackPlanner, Planner

REPAIRS_SETTING = "BATON_PLANNER_MAX_REPAIRS"
MAX_REPAIRS = 10  # more only spends tokens: a model that fails ten times will not pass the eleventh


class PlannerConfigError(ValueError):
    """A planner setting does not read; the message says which and why."""


def select_planner(
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    memory: PlanMemory | None = None,
    env: dict[str, str] | None = None,
    stats: Mapping[str, ToolStats] | None = None,
) -> Planner:
    """The configured model's planner (offline fallback only if asked for), else the offline one."""
    env = dict(os.environ) if env is None else env
    memory = memory if memory is not None else PlanMemory()  # one memory, whichever plans
    offline = OfflinePlanner(catalogue, memory=memory, stats=stats)  # stats: a tie breaker
    model = model_planner(catalogue, memory, env)
    if model is None:
        return offline
    if env.get("BATON_PLANNER_FALLBACK", "").strip().lower() == "offline":
        return FallbackPlanner(model, offline)
    return model


def model_planner(
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    memory: PlanMemory | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelPlanner | None:
    """The planner of the configured model alone (none when no model is configured)."""
    env = os.environ if env is None else env
    try:
        client = model_from_env(env)
    except ValueError as exc:
        raise PlannerConfigError(str(exc)) from None
    if client is None:
        return None
    return ModelPlanner(client, catalogue, max_repairs=max_repairs(env), memory=memory)


def max_repairs(env: Mapping[str, str]) -> int:
    """BATON_PLANNER_MAX_REPAIRS, 0 to MAX_REPAIRS (default 2)."""
    raw = (env.get(REPAIRS_SETTING) or "").strip()
    if not raw:
        return 2
    if not raw.isdigit() or int(raw) > MAX_REPAIRS:
        raise PlannerConfigError(
            f"{REPAIRS_SETTING} must be a whole number from 0 to {MAX_REPAIRS}: {raw!r}"
        )
    return int(raw)
