"""The offline planner's general mechanisms of session 7's second rotation (round 13's failures
and what makes the planner brittle on unseen phrasing, each tested here with other words than
the suite's): typos, numbers in words, lengths in parts, idioms of deleting, saving, appending
and summarising, money sent, things a page lists, a sent template, key paths beside an API,
values named by a key's spelling, requests said by their result, changes of form, questions
that make nothing, approvers' asides, meetings as a length of time, a day's agenda, look-ups
first for a text task or a send, channels that are no intent, and weather felt."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused
from baton_planner.offline import words as w
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


def _tools(request: str, catalogue: Catalogue = CATALOGUE) -> list[str]:
    return [t for t, _ in _steps(request, catalogue)]


# --- typos ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "tools"),
    [
        ("plz remvoe scratch.tmp", ["files.delete"]),  # two letters swapped
        ("dleete draft-3.md", ["files.delete"]),
        ("sumamrise minutes.md", ["files.read", "llm.generate"]),
        ("tranlate intro.md into dutch", ["files.read", "llm.generate"]),
    ],
)
def test_a_slipped_key_reads_as_the_word_meant(request_: str, tools: list[str]) -> None:
    assert _tools(request_) == tools


def test_a_real_word_or_a_name_is_never_corrected() -> None:
    # "quota" is one letter from "quote", "brest" one from "best": real words and names stay
    from baton_planner.offline.spelling import corrected

    known = OfflinePlanner(CATALOGUE).vocabulary
    assert corrected("remve the quota files in brest", known) == "remove the quota files in brest"
    steps = _steps("fetch https://api.example.org/v2/account and pull out the plan and the quota")
    assert sorted(i["path"] for t, i in steps if t == "json.query") == ["plan", "quota"]
    assert _steps("what's the weather like in brest", AGENTS)[0][1]["city"] == "brest"


# --- numbers and lengths of time -----------------------------------------------------------------


def test_numbers_in_words_before_a_noun_are_digits() -> None:
    assert (
        w.counted("the last twelve builds and twenty-one days") == "the last 12 builds and 21 days"
    )
    assert w.counted("the one I sent, 'two words'") == "the one I sent, 'two words'"
    steps = _steps("the latest seven commits in the ledger-service repo", AGENTS)
    assert steps[0][1]["limit"] == 7


def test_a_number_joined_to_its_unit_by_a_hyphen_fills_the_field() -> None:
    assert _steps("a 4-day outlook for riga", AGENTS)[0][1] == {"city": "riga", "days": 4}


@pytest.mark.parametrize(
    ("request_", "seconds"),
    [
        ("pause 2 minutes 15 seconds", 135),
        ("sleep for one and a half minutes", 90),
        ("hold on for seventy seconds", 70),
        ("wait a minute and a half", 90),
    ],
)
def test_a_length_in_parts_adds_up(request_: str, seconds: float) -> None:
    assert _steps(request_) == [("time.sleep", {"seconds": seconds})]


def test_a_wait_longer_than_the_tool_allows_is_asked_about_not_shortened() -> None:
    with pytest.raises(PlanRefused, match="at most 3600"):
        _plan("wait three hours, then remove cache.db")


# --- idioms --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_", ["discard stale.csv", "shred secrets.bak", "clean out cache-a.tmp"]
)
def test_more_verbs_of_deleting_a_file(request_: str) -> None:
    assert _tools(request_) == ["files.delete"]


def test_a_result_put_into_a_file_is_saved() -> None:
    steps = _steps("summarise essay.md and dump it in short.md")
    assert [t for t, _ in steps] == ["files.read", "llm.generate", "files.write"]
    assert steps[-1][1]["path"] == "short.md"


def test_adding_a_quoted_line_to_a_file_appends_it() -> None:
    steps = _steps("add an entry 'renew passport' to errands.txt")
    assert steps == [
        ("files.write", {"path": "errands.txt", "content": "renew passport", "append": True})
    ]


@pytest.mark.parametrize(
    "request_", ["boil draft.md down", "sum up draft.md", "give me the gist of draft.md"]
)
def test_summaries_by_idiom(request_: str) -> None:
    assert _tools(request_) == ["files.read", "llm.generate"]


def test_money_sent_is_paid_and_gated() -> None:
    plan = _plan("send €75 to the caterer once rita approves")
    assert [s["tool"] for s in plan["steps"]] == ["mock.critical"]
    assert plan["steps"][0]["approval"]["approvers"] == ["rita"]


def test_what_a_page_lists_is_extracted_by_the_model() -> None:
    assert _tools("collect every author mentioned on https://blog.example.org/roundup") == [
        "http.request",
        "llm.generate",
    ]


def test_what_a_url_returns_named_as_the_thing_got_is_a_fetch() -> None:
    steps = _steps("grab the payload from https://api.example.org/v1/jobs/9 and tell me its state")
    assert [t for t, _ in steps] == ["http.request", "json.query"]
    assert steps[1][1]["path"] == "state"


# --- data ----------------------------------------------------------------------------------------


def test_a_sent_template_with_its_values_is_filled_first() -> None:
    steps = _steps("with run=81 post 'nightly {run} passed' to https://hooks.example.org/ci")
    assert [t for t, _ in steps] == ["text.template", "http.request"]
    assert steps[1][1]["json"] == {"message": "${steps.fill.output.text}"}


def test_a_path_of_keys_beside_an_apis_url_is_no_file() -> None:
    steps = _steps("from https://api.example.org/v1/orders/5 take shipping.address.zip")
    assert steps[1] == (
        "json.query",
        {"data": steps[1][1]["data"], "path": "shipping.address.zip"},
    )
    assert _tools("fetch https://api.example.org/v1/a into dump.data.json")[-1] == "files.write"


def test_a_value_named_by_a_keys_spelling_is_queried() -> None:
    steps = _steps("open app.json and tell me the setting for retry_backoff")
    assert steps[1][0] == "json.query"
    assert steps[1][1]["path"] == "retry_backoff"


# --- shapes of a request ---------------------------------------------------------------------


def test_a_request_said_by_its_result_is_the_request() -> None:
    steps = _steps(
        "could you get memo.md translated into french and the translation posted to "
        "https://hooks.example.org/fr"
    )
    assert [t for t, _ in steps] == ["files.read", "llm.generate", "http.request"]


def test_changing_a_texts_form_is_the_models() -> None:
    assert _tools("turn groceries.txt into a table") == ["files.read", "llm.generate"]


def test_a_question_makes_nothing() -> None:
    assert _tools("anything in the knowledge base about parking?", AGENTS) == [
        "mcp.wiki.search_pages"
    ]


def test_words_between_approvers_and_their_verb_keep_the_gate() -> None:
    plan = _plan("remove prod-old.db but only after kai and lu both approve")
    assert plan["steps"][0]["approval"]["approvers"] == ["kai", "lu"]


def test_something_new_to_make_is_the_models_whatever_its_words_name() -> None:
    assert _tools("give me two taglines for our post office campaign") == ["llm.generate"]


def test_if_that_fails_refers_to_the_task_before() -> None:
    plan = _plan("fetch https://shop.example.org; if that fails, write 'closed' to shop.txt")
    assert "when" in plan["steps"][1]


# --- calendar ------------------------------------------------------------------------------------


def test_a_length_of_time_needed_with_people_is_a_meeting() -> None:
    steps = _steps("I need 25 minutes with oda and pim on thursday")
    assert [t for t, _ in steps] == ["calendar.find_slots", "calendar.create_event"]
    assert steps[0][1]["attendees"] == ["oda", "pim"]


@pytest.mark.parametrize(
    "request_", ["do I have anything on tuesday?", "what's happening on thursday?"]
)
def test_a_days_agenda_asked_in_other_words(request_: str) -> None:
    assert _tools(request_) == ["calendar.list_events"]


def test_anything_in_a_file_is_no_calendar_question() -> None:
    assert _tools("is there anything on for monday?") == ["calendar.list_events"]
    assert _tools("is there anything in rota.md about weekends?") == [
        "files.read",
        "llm.generate",
    ]


# --- described tools -----------------------------------------------------------------------------


def test_the_object_a_look_up_provides_is_looked_up_first() -> None:
    steps = _steps("share the forecast for tallinn in #outdoors", AGENTS)
    assert [t for t, _ in steps] == ["weather.forecast", "chat.post_message"]
    steps = _steps("summarise the last 6 commits of the search-api repo into log.md", AGENTS)
    assert [t for t, _ in steps] == ["mcp.git.list_commits", "llm.generate", "files.write"]


def test_a_channels_name_is_no_intent() -> None:
    assert _tools("read a.txt and send it to #stock-room", AGENTS) == [
        "files.read",
        "chat.post_message",
    ]


@pytest.mark.parametrize("request_", ["how hot is it in seville", "is it freezing in oulu?"])
def test_how_it_feels_outside_asks_about_the_weather(request_: str) -> None:
    assert _tools(request_, AGENTS) == ["weather.forecast"]


# --- politeness and lines noted ------------------------------------------------------------------


def test_a_request_wrapped_in_politeness_is_the_request() -> None:
    assert _tools("I was wondering if you could erase old-2.log for me") == ["files.delete"]


def test_two_results_wished_for_are_two_tasks_in_order() -> None:
    assert _tools("I'd like plan.md read and translated, please") == ["files.read", "llm.generate"]


def test_a_line_noted_or_logged_in_a_file_is_appended() -> None:
    assert _steps("record 'backup verified' in audit.log") == [
        ("files.write", {"path": "audit.log", "content": "backup verified", "append": True})
    ]
