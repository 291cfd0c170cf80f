"""The offline planner's general mechanisms of issue 30's ninth round (driven by held-out round
9's failures, each tested here with other words than the suite's): the lexicon layer (idioms read
as the plain words the rules understand), calendar chats and free lengths of time, values asked
for with a possessive, a condition on a named field of JSON data, extraction out of a page,
lists after a dash, names typed in lower case for a constrained field, and framing sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner
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


@pytest.mark.parametrize(
    ("said", "read"),
    [
        (
            "let https://h.example/x know that we shipped",
            "notify https://h.example/x that we shipped",
        ),
        ("drop it in #ops", "post it to #ops"),
        ("tack 'eof' onto the end of log.md", "append 'eof' to log.md"),
        ("return the id only", "return only the id"),
        (
            "only when its state is 'up' write 'ok' to s.txt",
            "only if its state is 'up' write 'ok' to s.txt",
        ),
        ("in 10 seconds read a.txt", "wait 10 seconds, then read a.txt"),
        ("and ask us for sign-off first", "and ask for sign-off first"),
        ("give a recap of minutes.md", "give a short summary of minutes.md"),
    ],
)
def test_the_lexicon_reads_idioms_as_plain_words(said: str, read: str) -> None:
    assert plain(said) == read


def test_the_lexicon_never_touches_quoted_text() -> None:
    assert plain("post 'let https://a.example know' to #ops") == (
        "post 'let https://a.example know' to #ops"
    )


def test_a_url_told_something_gets_a_post() -> None:
    [(tool, data)] = _steps("let https://hooks.example.com/ops know that the disk is full")
    assert tool == "http.request" and data["method"] == "POST"


def test_a_line_added_at_the_bottom_of_a_file_is_appended() -> None:
    [(tool, data)] = _steps("put a new line 'shipped' at the bottom of diary.md")
    assert tool == "files.write" and data["path"] == "diary.md" and data["append"] is True


def test_a_value_kept_only_or_nothing_else_is_picked() -> None:
    steps = _steps("load settings.json and return the locale only")
    assert [t for t, _ in steps] == ["files.read", "json.query"]
    assert steps[1][1]["path"] == "locale"
    steps = _steps('we want the "tag" from release.json, nothing else')
    assert [t for t, _ in steps] == ["files.read", "json.query"]
    assert steps[1][1]["path"] == "tag"


def test_waiting_said_first_without_a_comma_waits_then_acts() -> None:
    steps = _steps("after 3 minutes read report.txt")
    assert [t for t, _ in steps] == ["time.sleep", "files.read"]
    assert steps[0][1]["seconds"] == 180


def test_a_chat_arranged_with_someone_is_a_meeting_not_a_wait() -> None:
    steps = _steps("please arrange a 20 minute chat between me and ola@firm.example on monday")
    assert [t for t, _ in steps] == ["calendar.find_slots", "calendar.create_event"]
    assert steps[0][1]["attendees"] == ["ola@firm.example"]
    assert steps[0][1]["duration_minutes"] == 20


def test_a_free_length_of_time_asked_for_finds_slots() -> None:
    [(tool, data)] = _steps("find us a free hour with ravi and suki on tuesday")
    assert tool == "calendar.find_slots"
    assert data["attendees"] == ["ravi", "suki"] and data["duration_minutes"] == 60


def test_values_asked_for_with_a_possessive_are_picked_each() -> None:
    steps = _steps("fetch https://api.example.net/people/3 and tell me her city, phone and title")
    assert [t for t, _ in steps] == ["http.request", *["json.query"] * 3]
    assert {d["path"] for _, d in steps[1:]} == {"city", "phone", "title"}


def test_a_condition_on_a_named_field_of_json_picks_that_field() -> None:
    plan = _plan(
        "get https://api.example.com/deploys/9 and only if its phase is 'done' "
        "post 'deployed' to https://hooks.example.com/d"
    )
    tools = [s["tool"] for s in plan["steps"]]
    assert tools == ["http.request", "json.query", "http.request"]
    pick, post = plan["steps"][1], plan["steps"][2]
    assert pick["input"]["path"] == "phase"
    assert post["when"].startswith(f"${{steps.{pick['id']}.output")
    # the HTTP status is the response's own, no field to pick
    plan = _plan("check https://example.com and if its status is 404 write 'gone' to g.txt")
    assert [s["tool"] for s in plan["steps"]] == ["http.request", "files.write"]


def test_a_down_site_gates_what_follows_without_a_comma() -> None:
    plan = _plan(
        "check https://api.example.com/health and if it is down post 'api down' to "
        "https://hooks.example.com/a"
    )
    assert plan["steps"][1]["when"].endswith(">= 400")


def test_extraction_out_of_a_page_goes_to_the_model_with_the_page_fetched() -> None:
    steps = _steps("list the speakers mentioned in https://conf.example.org/agenda")
    assert [t for t, _ in steps] == ["http.request", "llm.generate"]


def test_a_list_after_a_dash_without_and_fans_out() -> None:
    steps = _steps("suggest a name for each pet - cat, dog, parrot")
    assert [t for t, _ in steps] == ["llm.generate"] * 3


def test_tickers_typed_in_lower_case_are_upper_cased_for_the_field() -> None:
    steps = _steps("share prices of msft and goog please", AGENTS)
    assert sorted(d["symbol"] for _, d in steps) == ["GOOG", "MSFT"]


def test_a_greeting_and_a_past_situation_frame_the_task() -> None:
    steps = _steps(
        "Good morning! My manager asked for numbers. Read sales.csv please. Kind regards"
    )
    assert [t for t, _ in steps] == ["files.read"]


# --- round 10's failures (issue 30, session 6): the same mechanisms, with other words ----------


@pytest.mark.parametrize(
    ("said", "read"),
    [
        ("warn #ops that the disk is full", "notify #ops that the disk is full"),
        ("scrap the review evt-12", "cancel the review evt-12"),
        ("create a backup of db.sql named db.bak", "copy db.sql to db.bak"),
        ("bring ann and bo together on monday", "arrange a meeting with ann and bo on monday"),
        ("read a.json and, only if x is 1, read b.txt", "read a.json and if x is 1, read b.txt"),
        ("pick all the dates from plan.md", "extract all the dates from plan.md"),
    ],
)
def test_the_lexicon_reads_more_idioms(said: str, read: str) -> None:
    assert plain(said) == read


def test_extraction_whatever_its_object_names_goes_to_the_model() -> None:
    steps = _steps("list all the email addresses in members.csv")
    assert [t for t, _ in steps] == ["files.read", "llm.generate"]


def test_a_text_verb_no_tool_names_goes_to_the_model_between_read_and_write() -> None:
    steps = _steps("read survey.txt, cluster the answers and write the result to clusters.md")
    assert [t for t, _ in steps] == ["files.read", "llm.generate", "files.write"]


def test_attendees_listed_after_a_group_noun_and_a_colon() -> None:
    steps = _steps("set up a retro with the team: kim, lou and max on friday")
    assert steps[0][1]["attendees"] == ["kim", "lou", "max"]


def test_when_both_are_free_names_them() -> None:
    [(tool, data)] = _steps("is there half an hour on monday when both tia and uri are free?")
    assert tool == "calendar.find_slots" and data["attendees"] == ["tia", "uri"]


def test_a_bare_field_compared_gates_on_that_field() -> None:
    plan = _plan("read state.json and if paused is false, write 'running' to run.txt")
    assert [s["tool"] for s in plan["steps"]] == ["files.read", "json.query", "files.write"]
    assert plan["steps"][1]["input"]["path"] == "paused"
    assert "when" in plan["steps"][2]


def test_its_up_without_a_comma_is_a_condition() -> None:
    plan = _plan("check https://a.example.com and if it's up fetch https://a.example.com/feed")
    assert plan["steps"][1]["when"].endswith("< 400")


def test_an_address_names_the_thing_looked_up() -> None:
    [(tool, data)] = _steps("look up bo@shop.example in the crm", AGENTS)
    assert tool == "crm.lookup_customer" and data["customer"] == "bo@shop.example"


def test_find_means_search_one_way() -> None:
    [(tool, _)] = _steps("find wiki articles about the holiday rota", AGENTS)
    assert tool == "mcp.wiki.search_pages"


def test_a_name_before_repo_is_no_intent() -> None:
    [(tool, data)] = _steps("show the newest 3 commits in the payments repo", AGENTS)
    assert tool == "mcp.git.list_commits" and data["repository"] == "payments"


def test_what_someone_needs_frames_the_task() -> None:
    steps = _steps("My team needs the uptime. Fetch https://status.example.com/api/up.json please.")
    assert [t for t, _ in steps] == ["http.request"]


# --- the tuned part's last failures of round 8 (session 6) -------------------------------------


def test_results_gathered_into_a_file_are_saved_there() -> None:
    steps = _steps("translate a.md and b.md separately and collect all the translations in out.md")
    assert [t for t, _ in steps][-1] == "files.write" and steps[-1][1]["path"] == "out.md"
    assert [t for t, _ in steps].count("llm.generate") == 2


def test_a_thing_made_with_a_name_takes_the_quoted_name() -> None:
    [(tool, data)] = _steps('put together a wiki page titled "Hiring plan"', AGENTS)
    assert tool == "mcp.wiki.create_page" and data["title"] == "Hiring plan"
