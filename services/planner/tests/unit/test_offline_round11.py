"""The offline planner's general mechanisms of issue 30's rounds 11 and 12 (driven by their
failures, each tested here with other words than the suite's): time made for a meeting, more
meeting nouns, a meeting that is nobody, a day's meetings listed, idioms of deleting, a message
given with its target, extraction "out of" a file, questions about a file's text, a field named
after the question, thanks that are no field, clothes that ask about the weather, a gerund that
is no ticker, and a verb-less detail joined to the task before it."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused
from baton_planner.offline.lexicon import plain
from baton_planner.quality import load_part

CATALOGUE = Catalogue(DEPLOYED_TOOLS)
AGENTS = load_part(
    Path(__file__).resolve().parents[4] / "bench" / "planner_suite_agents.yaml"
).catalogue


def _plan(request: str, catalogue: Catalogue = CATALOGUE) -> dict:
    plan = OfflinePlanner(catalogue).plan_sync(request, {})
    validate_plan(plan, catalogue, {})
    return plan


def _steps(request: str, catalogue: Catalogue = CATALOGUE) -> list[tuple[str, dict]]:
    return [(s["tool"], s["input"]) for s in _plan(request, catalogue)["steps"]]


def test_time_made_for_a_meeting_books_it() -> None:
    steps = _steps("can we make 20 minutes for a code walkthrough with rosa and ivo on friday")
    assert [t for t, _ in steps] == ["calendar.find_slots", "calendar.create_event"]
    assert steps[0][1]["attendees"] == ["rosa", "ivo"]
    assert steps[0][1]["duration_minutes"] == 20


@pytest.mark.parametrize(
    "request_", ["book an intro with lee on tuesday", "schedule a lunch with kai and mo on friday"]
)
def test_more_meeting_nouns_are_booked(request_: str) -> None:
    assert [t for t, _ in _steps(request_)] == ["calendar.find_slots", "calendar.create_event"]


def test_a_meeting_named_after_for_is_no_attendee() -> None:
    steps = _steps("set up a call for a quick demo with dana on monday")
    assert steps[0][1]["attendees"] == ["dana"]


def test_a_days_meetings_are_listed() -> None:
    assert _steps("show me friday's calls") == [
        ("calendar.list_events", {"window_start": "friday", "window_end": "friday"})
    ]


@pytest.mark.parametrize(
    ("said", "read"),
    [
        ("get rid of a.log", "delete a.log"),
        ("trash old.csv and new.csv", "delete old.csv and new.csv"),
        ("ping #ops with 'deploy done'", "send 'deploy done' to #ops"),
        ("dig the totals out of q3.md", "extract the totals from q3.md"),
        ("what's the build? the field is build_no", "what's the build (the build_no field)?"),
    ],
)
def test_the_lexicon_reads_these_idioms_as_plain_words(said: str, read: str) -> None:
    assert plain(said) == read


def test_a_dropped_file_is_deleted_and_a_gate_kept() -> None:
    plan = _plan("nuke cache.db once lea approves")
    assert [(s["tool"], s["input"]["path"]) for s in plan["steps"]] == [
        ("files.delete", "cache.db")
    ]
    assert plan["steps"][0]["approval"]["approvers"] == ["lea"]


def test_a_message_given_with_its_url_is_posted() -> None:
    (step,) = _steps("hit https://h.example/x with 'all green'")
    assert step[0] == "http.request"
    assert step[1]["method"] == "POST"
    assert "all green" in str(step[1]["json"])


def test_a_reader_met_by_a_word_of_what_is_extracted_does_not_extract() -> None:
    assert [t for t, _ in _steps("extract the open tasks from todo.md")] == [
        "files.read",
        "llm.generate",
    ]


def test_what_a_file_says_is_a_read() -> None:
    assert _steps("what does notes.md say?") == [("files.read", {"path": "notes.md"})]


@pytest.mark.parametrize(
    "request_",
    ["what are the action points in retro.md?", "which refund ids appear in returns.csv?"],
)
def test_a_question_about_a_files_text_is_the_models(request_: str) -> None:
    assert [t for t, _ in _steps(request_)] == ["files.read", "llm.generate"]


def test_a_field_named_after_the_question_is_queried() -> None:
    steps = _steps("in info.json, what's the build? key: build_no")
    assert ("json.query", "build_no") in [(t, i.get("path")) for t, i in steps]


def test_thanks_are_no_field() -> None:
    steps = _steps("fetch https://api.example.com/u.json and give me only the name, thanks")
    assert [i["path"] for t, i in steps if t == "json.query"] == ["name"]


def test_clothes_ask_about_the_weather() -> None:
    assert _steps("will I want a coat in prague?", AGENTS) == [
        ("weather.forecast", {"city": "prague"})
    ]


def test_a_gerund_is_no_ticker() -> None:
    with pytest.raises(PlanRefused):
        _plan("how are the shares moving", AGENTS)


@pytest.mark.parametrize(
    ("request_", "tool", "wanted"),
    [
        ("which commits landed on the search-service repo? latest 4 commits",
         "mcp.git.list_commits", {"repository": "search-service", "limit": 4}),
        ("weather for lisbon please. next 2 days of forecast", "weather.forecast",
         {"city": "lisbon", "days": 2}),
    ],
)  # fmt: skip
def test_a_verb_less_detail_joins_the_task_before_it(
    request_: str, tool: str, wanted: dict
) -> None:
    assert _steps(request_, AGENTS) == [(tool, wanted)]
