"""The planner quality suite (bench/planner_suite.yaml): at least 90% of its requests planned
right by the offline planner, and every plan it offers validates."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.testing import FakeGemini
from baton_planner.offline import OfflinePlanner
from baton_planner.quality import load_suite, measure, planners_from_env, run_suite

SUITE = Path(__file__).resolve().parents[4] / "bench" / "planner_suite.yaml"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return load_suite(SUITE)


def test_the_suite_is_varied(cases: list[dict]) -> None:
    assert len(cases) >= 60
    tools = {t for case in cases for t in case.get("tools", [])}
    assert {"http.request", "files.read", "files.write", "json.query", "text.template"} <= tools
    assert {"time.sleep", "llm.generate", "calendar.find_slots", "mock.critical"} <= tools
    assert any(c.get("when") for c in cases) and any(c.get("refused") for c in cases)


async def test_the_offline_planner_passes_at_least_90_percent(cases: list[dict]) -> None:
    result = await run_suite(OfflinePlanner(), cases)
    failures = "\n".join(f"{c.request}: {c.problems}" for c in result.failures)
    assert result.pass_rate >= 0.9, failures
    assert all(c.valid for c in result.cases), failures


def test_without_a_key_gemini_is_skipped_with_the_reason() -> None:
    planners, skipped = planners_from_env({})
    assert [p.name for p in planners] == ["offline"] and "GEMINI_API_KEY" in (skipped or "")


async def test_with_a_key_the_gemini_planner_is_measured_on_the_same_cases(
    fake_gemini: FakeGemini,
) -> None:
    env = {"GEMINI_API_KEY": "test-key", "BATON_GEMINI_BASE_URL": fake_gemini.url}
    planners, skipped = planners_from_env(env)
    assert skipped is None and [p.name for p in planners] == ["offline", "gemini"]
    fake_gemini.reply_plan(
        {"steps": [{"id": "read", "tool": "files.read", "input": {"path": "notes.txt"}}]}
    )
    fake_gemini.reply_plan({"steps": [{"id": "w", "tool": "time.sleep", "input": {"seconds": 1}}]})
    cases = [
        {"request": "read notes.txt", "tools": ["files.read"]},
        {"request": "zzz qqq", "refused": True},
    ]
    result, _ = await measure(planners[1], cases)
    assert [c.passed for c in result.cases] == [True, False]
    assert "gemini: 1/2 requests planned right (50%)" in result.line("gemini")
