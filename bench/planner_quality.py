"""The planner quality suite (bench/planner_suite.yaml) through the offline planner and, when a
key is configured (GEMINI_API_KEY or GOOGLE_API_KEY), through the Gemini planner on the same
requests: the share planned right, whether every plan validates, the median time per request.

    .venv/bin/python -m bench.planner_quality
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from baton_common.gemini import gemini_from_env
from baton_planner.gemini import GeminiPlanner
from baton_planner.offline import OfflinePlanner
from baton_planner.planners import Planner
from baton_planner.quality import SuiteResult, load_suite, run_case

SUITE = Path(__file__).resolve().parent / "planner_suite.yaml"


async def measure(planner: Planner, cases: list[dict[str, Any]]) -> tuple[SuiteResult, float]:
    """The suite's result and the median seconds per request."""
    from baton_common.catalogue import DEFAULT_CATALOGUE

    results, times = [], []
    for case in cases:
        started = time.perf_counter()
        results.append(await run_case(planner, case, DEFAULT_CATALOGUE))
        times.append(time.perf_counter() - started)
    return SuiteResult(results), statistics.median(times)


def lines() -> list[str]:
    """One line per planner measured (and why Gemini was not, when it was not)."""
    cases = load_suite(SUITE)
    out = []
    result, median = asyncio.run(measure(OfflinePlanner(), cases))
    out.append(f"{result.line('offline')}; median {median * 1000:.1f} ms per request")
    client = gemini_from_env()
    if client is None:
        out.append("planner gemini: skipped (set GEMINI_API_KEY or GOOGLE_API_KEY to measure it)")
    else:
        result, median = asyncio.run(measure(GeminiPlanner(client), cases))
        out.append(f"{result.line('gemini')}; median {median:.1f} s per request")
    return out


def report(failures_of: Planner | None = None) -> str:
    """The lines, then each offline failure with its reason (for docs/planner.md)."""
    text = "\n".join(lines())
    result, _ = asyncio.run(measure(failures_of or OfflinePlanner(), load_suite(SUITE)))
    for case in result.failures:
        text += f"\n  failed: {case.request!r}: {'; '.join(case.problems)}"
    return text


if __name__ == "__main__":
    print(report())
