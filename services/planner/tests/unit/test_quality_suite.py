"""The planner quality suite: at least 90% of the tuned part's requests (bench/planner_suite*.yaml)
planned right by the offline planner, every plan it offers validates (the held-out part's too),
and the held-out part (bench/planner_heldout*.yaml) shares no request with the tuned part.

The held-out part's pass rate is not asserted: a test that must pass invites tuning on it.
`make bench-planner` prints it."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.testing import FakeGemini
from baton_planner.offline import OfflinePlanner
from baton_planner.quality import (
    load_part,
    load_suite,
    measure,
    measure_parts,
    planners_from_env,
    run_suite,
)

BENCH = Path(__file__).resolve().parents[4] / "bench"
SUITE = BENCH / "planner_suite.yaml"
TUNED = [SUITE, BENCH / "planner_suite_agents.yaml"]
HELD_OUT = [BENCH / "planner_heldout.yaml", BENCH / "planner_heldout_agents.yaml"]


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


async def test_the_agent_file_tables_plan_with_their_tools() -> None:
    part = load_part(BENCH / "planner_suite_agents.yaml")
    assert {"weather.forecast", "tickets.open", "files.read"} <= set(part.catalogue.names())
    result, _ = await measure_parts(OfflinePlanner(), [part])
    failures = "\n".join(f"{c.request}: {c.problems}" for c in result.failures)
    assert result.pass_rate >= 0.9 and all(c.valid for c in result.cases), failures


async def test_the_held_out_part_is_apart_and_every_plan_it_gets_validates() -> None:
    held_out = [load_part(p) for p in HELD_OUT]
    tuned = {c["request"].lower() for p in TUNED for c in load_part(p).cases}
    assert all(c["request"].lower() not in tuned for part in held_out for c in part.cases)
    assert "NEVER TUNED ON" in HELD_OUT[0].read_text()
    result, _ = await measure_parts(OfflinePlanner(), held_out)
    assert len(result.cases) >= 20 and all(c.valid for c in result.cases)


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


def test_step_inputs_fail_a_plan_of_the_right_shape_with_the_wrong_key_inputs() -> None:
    from baton_common.catalogue import DEFAULT_CATALOGUE
    from baton_common.plans import validate_plan
    from baton_planner.quality import check

    plan = validate_plan(
        {
            "steps": [
                {"id": "a", "tool": "files.delete", "input": {"path": "a.log"}},
                {"id": "b", "tool": "files.delete", "input": {"path": "delete a.log and B.log"}},
                {"id": "w", "tool": "time.sleep", "input": {"seconds": 90.0}},
            ]
        },
        DEFAULT_CATALOGUE,
        {},
    )
    good = {"step_inputs": {"time.sleep": {"seconds": 90}, "files.delete": {"path": "A.LOG "}}}
    assert check(plan, good) == []
    one_each = {"step_inputs": {"files.delete": [{"path": "a.log"}, {"path": "b.log"}]}}
    (problem,) = check(plan, one_each)
    assert "no files.delete step has input {'path': 'b.log'}" in problem
    # one step cannot meet two expectations
    twice = {"step_inputs": {"files.delete": [{"path": "a.log"}, {"path": "a.log"}]}}
    assert len(check(plan, twice)) == 1


def test_every_table_uses_only_known_case_keys() -> None:
    known = {"request", "tools", "parallel", "after", "outputs", "when", "approval", "refused"}
    known |= {"inputs", "step_inputs"}
    for table in sorted(BENCH.glob("planner_*.yaml")):
        if table.name == "planner_mcp_tools.yaml":
            continue
        for case in load_part(table).cases:
            assert set(case) <= known, (table.name, case["request"], set(case) - known)


def test_a_pass_rate_short_of_all_is_not_rounded_up_to_100_percent() -> None:
    from baton_planner.quality import CaseResult, SuiteResult

    result = SuiteResult([CaseResult("a")] * 649 + [CaseResult("b", ["wrong"])] * 2)
    assert "649/651 requests planned right (99.7%)" in result.line("offline")
