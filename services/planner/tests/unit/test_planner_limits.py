"""The offline planner reads a bounded request with patterns that never backtrack quadratically."""

from __future__ import annotations

import re
import time

import pytest
from baton_planner.learning import literals
from baton_planner.offline import OfflinePlanner
from baton_planner.offline import words as w
from baton_planner.offline.parsing import _CLAUSE, _MIDDLE_IF, _ORDER, _PARALLEL, split_tasks
from baton_planner.planners import PlanningError

N = w.MAX_REQUEST_CHARS
# Runs that made a pattern start at every position and scan to the run's end from each one.
RUNS = [" ", "\t", "\n", ", ", "1", "a-", "-1", "_", "a.", "if ", "and ", "then "]


def pathological() -> list[str]:
    return [f"fetch {unit * ((N - 20) // len(unit))} x" for unit in RUNS]


def test_a_request_longer_than_the_limit_is_refused_with_the_reason() -> None:
    with pytest.raises(PlanningError, match=f"reads at most {N}"):
        OfflinePlanner().draft("fetch https://example.com " + "and more " * 300)


@pytest.mark.parametrize("request_", pathological(), ids=repr)
def test_pathological_requests_are_planned_or_refused_quickly(request_: str) -> None:
    started = time.perf_counter()
    try:
        OfflinePlanner().draft(request_)
    except PlanningError:
        pass  # refusing is fine: the point is how long the words take to read
    literals(request_)
    assert time.perf_counter() - started < 1.0  # a run of 2,000 blanks took seconds per pattern


@pytest.mark.parametrize("unit", RUNS, ids=repr)
def test_the_guarded_patterns_scan_a_long_run_once(unit: str) -> None:
    text = unit * (20_000 // len(unit))  # ten times the request limit
    started = time.perf_counter()
    for pattern in (_ORDER, _PARALLEL, _CLAUSE, w.EMAIL):
        pattern.findall(text)
    _MIDDLE_IF.match(text[:N])
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("fetch a, then summarise it", ["fetch a", "summarise it"]),
        ("fetch a  then   save it", ["fetch a", "save it"]),
        ("fetch a ,  and then save it", ["fetch a", "save it"]),
    ],
)
def test_guarded_patterns_split_as_before(text: str, parts: list[str]) -> None:
    assert [p.strip() for p in _ORDER.split(text)] == parts
    assert re.sub(r"\s+", " ", " | ".join(t.text for t in split_tasks(text))) == " | ".join(parts)
