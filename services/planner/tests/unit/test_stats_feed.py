"""The registry's figures reach the planner: among equivalent tools it picks the one that works."""

from __future__ import annotations

import inspect

import pytest
from baton_common.catalogue import Catalogue, ToolSpec
from baton_common.toolstats import AgentStats
from baton_planner.extensions import StatsFeed, tool_stats
from baton_planner.offline import OfflinePlanner

TAKES_STATS = "stats" in inspect.signature(OfflinePlanner).parameters


def _sms(name: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description="Send a text message (SMS) to a phone.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        output_schema={"type": "object"},
        keywords=("sms", "text"),
        text_field="text",
    )


CATALOGUE = Catalogue((_sms("sms.alpha"), _sms("sms.beta")))


def _figures(alpha: float, beta: float) -> list[AgentStats]:
    return [
        AgentStats(
            name="sms.alpha", calls=10, succeeded=int(alpha * 10), success_rate=alpha, p50_ms=5.0
        ),
        AgentStats(
            name="sms.beta", calls=10, succeeded=int(beta * 10), success_rate=beta, p50_ms=5.0
        ),
        AgentStats(name="sms.never", calls=1, running=1),  # nothing finished: no figure to give
    ]


def test_figures_become_tool_stats() -> None:
    stats = tool_stats(_figures(0.2, 0.9))
    assert set(stats) == {"sms.alpha", "sms.beta"}
    assert stats["sms.beta"].success_rate == 0.9 and stats["sms.beta"].calls == 10


@pytest.mark.skipif(not TAKES_STATS, reason="the offline planner does not take figures yet")
@pytest.mark.parametrize(
    ("alpha", "beta", "chosen"), [(0.2, 0.9, "sms.beta"), (0.9, 0.2, "sms.alpha")]
)
async def test_the_planner_follows_success_rates(alpha: float, beta: float, chosen: str) -> None:
    planner = OfflinePlanner(CATALOGUE)
    await StatsFeed(lambda _ws: _figures(alpha, beta)).give(planner, "default")
    plan = await planner.plan("sms the team that the build is green", {})
    assert [s["tool"] for s in plan["steps"]] == [chosen]


async def test_no_figures_plan_without_them() -> None:
    def broken(_ws: str) -> list[AgentStats]:
        raise OSError("no database")

    planner = OfflinePlanner(CATALOGUE)
    assert await StatsFeed(broken).give(planner, "default") == {}


def test_alternatives_are_ordered_by_the_figures() -> None:
    from baton_common.catalogue import ToolStats
    from baton_planner.extensions import order_alternatives

    stats = {
        "a.slow": ToolStats(calls=5, success_rate=0.9, p50_ms=900.0),
        "a.fast": ToolStats(calls=5, success_rate=0.9, p50_ms=10.0),
        "a.flaky": ToolStats(calls=5, success_rate=0.3, p50_ms=1.0),
    }
    alternatives = [{"tool": t, "input": {}} for t in ("a.new", "a.flaky", "a.slow", "a.fast")]
    plan = {"steps": [{"id": "s", "tool": "x", "alternatives": alternatives}]}
    ordered = order_alternatives(plan, stats)["steps"][0]["alternatives"]
    assert [a["tool"] for a in ordered] == ["a.fast", "a.slow", "a.flaky", "a.new"]
    assert order_alternatives({"steps": [{"id": "s"}]}, stats) == {"steps": [{"id": "s"}]}
