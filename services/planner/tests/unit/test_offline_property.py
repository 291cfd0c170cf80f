"""A law of the offline planner: whatever the words, it answers with a plan that validates or a
PlanningError with a message (never another exception, never an invalid plan)."""

from __future__ import annotations

from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner
from baton_planner.planners import PlanningError
from hypothesis import example, given, settings
from hypothesis import strategies as st

FRAGMENTS = [
    "fetch https://a.example.com/x", "read notes.md", "summarise it", "save it to out.md",
    "wait 5 seconds", "if https://b.example.com is down", "then", "and", "at the same time",
    "otherwise", "write 'hi' to h.txt", "merge a.txt and b.txt into c.txt", "for api, billing and search",
    "collect reports", "get the id field", "once ann approves", "retry 3 times", "pay 20 to bob",
    "find a slot for ann on monday", "book a meeting", "translate it into french", "zzz", ",", ".",
    ";", "them", "the results", "{name}", "'Hello {name}'", "name=Ann", "only if", "if",
    "after that", "in parallel", "delete old.log", "list events for friday", "check", "x=1",
]  # fmt: skip
PLANNER = OfflinePlanner()


@settings(max_examples=300, deadline=None, derandomize=True)  # the same cases in every CI run
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=7), st.text(max_size=30))
@example(parts=["then"], noise="ZON")  # a calendar slot search with nobody and no duration
def test_any_request_is_a_valid_plan_or_a_clear_refusal(parts: list[str], noise: str) -> None:
    request = " ".join(parts) + " " + noise
    try:
        plan = PLANNER.plan_sync(request)
    except PlanningError as exc:
        assert str(exc) and "invalid plan" not in str(exc)
        return
    validate_plan(plan)
