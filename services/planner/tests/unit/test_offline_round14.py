"""The offline planner's general mechanisms of session 7's third rotation (round 14's failures,
each tested here with other words than the suite's): idioms kept out of file names, pronouns
within a task, statements of the reason, sign-offs, chat shorthand for days, HTTP methods by
name, approval asked as "check with me", conditions said with "should" or as a bare field."""

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


def _plan(request: str) -> dict:
    plan = OfflinePlanner(CATALOGUE).plan_sync(request, {})
    validate_plan(plan, CATALOGUE, {})
    return plan


def _steps(request: str) -> list[tuple[str, dict]]:
    return [(s["tool"], s["input"]) for s in _plan(request)["steps"]]


def test_an_idiom_inside_a_file_name_is_the_name() -> None:
    # "scrap" is an idiom of cancelling; in "scrap-2.log" it is part of the name
    steps = _steps("delete scrap-1.log and scrap-2.log")
    assert [i["path"] for _, i in steps] == ["scrap-1.log", "scrap-2.log"]


def test_a_pronoun_after_the_first_clause_points_within_the_task() -> None:
    # "it" is the event the first clause named, not results of an earlier task
    assert _steps("cancel evt-88, they moved it to next month") == [
        ("calendar.cancel_event", {"uid": "evt-88"})
    ]


def test_a_statement_of_the_reason_is_no_task() -> None:
    steps = _steps("please summarise minutes.md. The board meeting ran long")
    assert [t for t, _ in steps] == ["files.read", "llm.generate"]


def test_a_sign_off_is_no_task() -> None:
    steps = _steps("translate hello.txt into german. That's all, cheers")
    assert "That's all" not in str(steps)
    assert [t for t, _ in steps] == ["files.read", "llm.generate"]


def test_chat_shorthand_for_days() -> None:
    assert w.plain_words("see u tmrw, not yday") == "see you tomorrow, not yesterday"
    assert w.plain_words("hows tommorow") == "how's tomorrow"


def test_an_http_method_named_in_the_words() -> None:
    steps = _steps("fire a PATCH at https://api.example.org/users/7 with 'active'")
    assert steps[0][1]["method"] == "PATCH"
    steps = _steps("send a delete request to https://api.example.org/tokens/3")
    assert steps == [
        ("http.request", {"url": "https://api.example.org/tokens/3", "method": "DELETE"})
    ]


def test_check_with_me_first_asks_for_approval() -> None:
    step = _plan("wipe cache.db, but run it by me first")["steps"][0]
    assert step["tool"] == "files.delete"
    assert step["requires_approval"] is True
    step = _plan("write 'x' to a.txt, but check with kim beforehand")["steps"][0]
    assert step["approval"] == {"approvers": ["kim"]}


def test_should_it_fail_is_a_condition() -> None:
    plan = _plan(
        "check https://shop.example.org/up; should it fail, write 'shop down' to alarm.txt"
    )
    assert any("when" in s for s in plan["steps"])


def test_a_bare_field_and_value_is_a_condition() -> None:
    plan = _plan("read job.json, if phase is done, write 'ok' to done.txt")
    assert any("when" in s for s in plan["steps"])


def test_a_quotes_words_make_no_calendar_request() -> None:
    steps = _steps(
        "read roster.json, take the lead field and put it in the template 'Standup call led by {lead}'"
    )
    assert [t for t, _ in steps] == ["files.read", "json.query", "text.template"]


def test_results_named_by_how_they_were_found_are_it() -> None:
    plan = OfflinePlanner(AGENTS).plan_sync(
        "search the wiki for the expense policy, then share what you found in #finance", {}
    )
    tools = [s["tool"] for s in plan["steps"]]
    assert tools == ["mcp.wiki.search_pages", "chat.post_message"]


def test_words_naming_only_the_tool_are_asked_about() -> None:
    planner = OfflinePlanner(AGENTS)
    with pytest.raises(PlanRefused, match="title"):
        planner.plan_sync("please create a new ticket", {})
    plan = planner.plan_sync("open a ticket about the broken login page", {})
    assert [s["tool"] for s in plan["steps"]] == ["tickets.open"]


def test_a_field_sent_on_is_queried_first() -> None:
    steps = _steps("read app.json and post only the version value to https://hooks.example.org/rel")
    assert [t for t, _ in steps] == ["files.read", "json.query", "http.request"]
    assert steps[1][1]["path"] == "version"


def test_fields_announced_then_listed_are_each_queried() -> None:
    steps = _steps("in prefs.json we want these fields - font, colour and size")
    assert [i.get("path") for t, i in steps if t == "json.query"] == ["font", "colour", "size"]


def test_a_condition_on_a_field_of_a_url_fetches_and_queries_it() -> None:
    plan = _plan(
        "if the load of https://ops.example.org/node/4 is above 8, write 'hot' to heat.txt"
    )
    steps = [(s["tool"], s["input"]) for s in plan["steps"]]
    assert [t for t, _ in steps] == ["http.request", "json.query", "files.write"]
    assert steps[1][1]["path"] == "load"
    assert "when" in plan["steps"][2]


def test_a_tool_that_only_reads_takes_the_request_as_its_task(tmp_path: Path) -> None:
    """Asking about a free-text field is for tools that write ("open a ticket": about what?);
    one that only reads is asked to do what the request says ("identify the worker")."""
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "who.yaml").write_text(
        "name: who.ami\ndescription: Identify the worker process that answers.\n"
        "keywords: [identify, whoami]\n"
        "input_schema: {type: object, properties: {text: {type: string}}, required: [text]}\n"
        "output_schema: {type: object}\nimplementation: {python: 'some.module:whoami'}\n"
    )
    (tmp_path / "table.yaml").write_text("agents: agents\ncases: []\n")
    catalogue = load_part(tmp_path / "table.yaml").catalogue
    plan = OfflinePlanner(catalogue).plan_sync("identify the worker", {})
    validate_plan(plan, catalogue, {})
    assert [(s["tool"], s["input"]["text"]) for s in plan["steps"]] == [
        ("who.ami", "identify the worker")
    ]
