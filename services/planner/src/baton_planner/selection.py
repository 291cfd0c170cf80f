"""Which planner a deployment plans with, picked from its environment.

Gemini when GEMINI_API_KEY (or GOOGLE_API_KEY) is set, the offline planner otherwise. An
unreachable Gemini is an error unless BATON_PLANNER_FALLBACK=offline: a deployment that
configured a model should not silently get worse plans.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolStats
from baton_common.gemini import gemini_from_env

from baton_planner.gemini import GeminiPlanner
from baton_planner.offline import OfflinePlanner, PlanMemory
from baton_planner.planners import FallbackPlanner, Planner


def select_planner(
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    memory: PlanMemory | None = None,
    env: dict[str, str] | None = None,
    stats: Mapping[str, ToolStats] | None = None,
) -> Planner:
    """Gemini if a key is set (offline fallback only if asked for), else the offline planner."""
    env = dict(os.environ) if env is None else env
    memory = memory if memory is not None else PlanMemory()  # one memory, whichever plans
    offline = OfflinePlanner(catalogue, memory=memory, stats=stats)  # stats: a tie breaker
    client = gemini_from_env(env)
    if client is None:
        return offline
    gemini = GeminiPlanner(client, catalogue, memory=memory)
    if env.get("BATON_PLANNER_FALLBACK", "").strip().lower() == "offline":
        return FallbackPlanner(gemini, offline)
    return gemini
