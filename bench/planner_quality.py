"""The planner quality suite (bench/planner_suite.yaml) through the offline planner and, when a
key is configured (GEMINI_API_KEY or GOOGLE_API_KEY), through the Gemini planner on the same
requests: the share planned right, whether every plan validates, the median time per request.

    .venv/bin/python -m bench.planner_quality
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from baton_planner.offline import OfflinePlanner
from baton_planner.quality import load_suite, measure, planners_from_env

SUITE = Path(__file__).resolve().parent / "planner_suite.yaml"


def lines(env: dict[str, str] | None = None) -> list[str]:
    """One line per planner measured (and why Gemini was not, when it was not)."""
    cases = load_suite(SUITE)
    planners, skipped = planners_from_env(env)
    out = []
    for planner in planners:
        result, median = asyncio.run(measure(planner, cases))
        out.append(f"{result.line(planner.name)}; median {median * 1000:.1f} ms per request")
    if skipped:
        out.append(f"planner with a model (LLM): skipped ({skipped})")
    return out


def report() -> str:
    """The lines, then each offline failure with its reason (for docs/planner.md)."""
    text = "\n".join(lines())
    result, _ = asyncio.run(measure(OfflinePlanner(), load_suite(SUITE)))
    for case in result.failures:
        text += f"\n  failed: {case.request!r}: {'; '.join(case.problems)}"
    return text


if __name__ == "__main__":
    print(report())
