"""Tool statistics break ties between tools that fit a task equally well, and nothing more."""

from __future__ import annotations

from baton_common.catalogue import Catalogue, ToolSpec, ToolStats
from baton_planner.offline import OfflinePlanner


def _twin(name: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description="Send a text message to a phone.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        output_schema={"type": "object", "properties": {"id": {"type": "string"}}},
        keywords=("sms", "text"),
        text_field="text",
        primary_output="id",
    )


CATALOGUE = Catalogue((_twin("sms.alpha"), _twin("sms.beta")))
REQUEST = "send an sms saying the build is green"


def _tool(stats: dict[str, ToolStats] | None) -> str:
    plan = OfflinePlanner(CATALOGUE, stats=stats).plan_sync(REQUEST)
    return str(plan["steps"][0]["tool"])


def test_without_stats_ties_are_broken_by_name() -> None:
    assert _tool(None) == "sms.alpha"


def test_a_higher_success_rate_wins_a_tie() -> None:
    stats = {
        "sms.alpha": ToolStats(calls=100, success_rate=0.7, p50_ms=50),
        "sms.beta": ToolStats(calls=100, success_rate=0.99, p50_ms=400),
    }
    assert _tool(stats) == "sms.beta"


def test_then_a_lower_p50_wins() -> None:
    stats = {
        "sms.alpha": ToolStats(calls=10, success_rate=0.9, p50_ms=900),
        "sms.beta": ToolStats(calls=10, success_rate=0.9, p50_ms=30),
    }
    assert _tool(stats) == "sms.beta"


def test_stats_never_beat_a_better_fit() -> None:
    stats = {"llm.generate": ToolStats(calls=1, success_rate=0.0, p50_ms=None)}
    plan = OfflinePlanner(stats=stats).plan_sync("summarise the meeting notes")
    assert plan["steps"][0]["tool"] == "llm.generate"


def test_a_mapping_kept_up_to_date_in_place_is_read_at_each_plan() -> None:
    stats: dict[str, ToolStats] = {}
    planner = OfflinePlanner(CATALOGUE, stats=stats)
    assert planner.plan_sync(REQUEST)["steps"][0]["tool"] == "sms.alpha"
    stats["sms.beta"] = ToolStats(calls=5, success_rate=1.0, p50_ms=10)
    assert planner.plan_sync(REQUEST + " now")["steps"][0]["tool"] == "sms.beta"
