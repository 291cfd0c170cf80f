"""The planner quality suite through the offline planner and, when a key is configured
(GEMINI_API_KEY or GOOGLE_API_KEY), through the Gemini planner on the same requests: the share
planned right, whether every plan validates, the median time per request.

Two parts, scored apart: the tuned part (bench/planner_suite*.yaml: the planner was shaped on
it) and the held-out part (bench/planner_heldout*.yaml: only scored, never tuned on; rotated each
round, see docs/planner.md). A figure on the held-out part is what to expect on new requests.

    .venv/bin/python -m bench.planner_quality            # scores; the tuned part's failures
    .venv/bin/python -m bench.planner_quality --held-out # also the held-out failures (only when
                                                         # rotating a round: then they are tuned)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from baton_planner.offline import OfflinePlanner
from baton_planner.quality import SuitePart, load_part, measure_parts, planners_from_env

HERE = Path(__file__).resolve().parent
SUITE = HERE / "planner_suite.yaml"  # the tuned part's main table
TUNED = [SUITE, HERE / "planner_suite_agents.yaml"]
HELD_OUT = [HERE / "planner_heldout.yaml", HERE / "planner_heldout_agents.yaml"]


def parts() -> dict[str, list[SuitePart]]:
    """The suite's two parts by label, each a list of tables."""
    return {
        "tuned": [load_part(p) for p in TUNED if p.exists()],
        "held-out": [load_part(p) for p in HELD_OUT if p.exists()],
    }


def lines(env: dict[str, str] | None = None) -> list[str]:
    """One line per planner and part measured (and why Gemini was not, when it was not)."""
    planners, skipped = planners_from_env(env)
    out = []
    for planner in planners:
        for label, tables in parts().items():
            result, median = asyncio.run(measure_parts(planner, tables))
            out.append(
                f"{result.line(planner.name)} [{label} part]; "
                f"median {median * 1000:.1f} ms per request"
            )
    if skipped:
        out.append(f"planner with a model (LLM): skipped ({skipped})")
    return out


def report(held_out: bool = False) -> str:
    """The lines, then each offline failure of the tuned part with its reason (for
    docs/planner.md); the held-out part's too only when asked (seeing them is tuning on them)."""
    text = "\n".join(lines())
    for label, tables in parts().items():
        if label == "held-out" and not held_out:
            continue
        result, _ = asyncio.run(measure_parts(OfflinePlanner(), tables))
        for case in result.failures:
            text += f"\n  failed [{label}]: {case.request!r}: {'; '.join(case.problems)}"
    return text


if __name__ == "__main__":
    print(report(held_out="--held-out" in sys.argv[1:]))
