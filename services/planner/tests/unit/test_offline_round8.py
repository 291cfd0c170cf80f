"""The offline planner's general mechanisms of issue 30's eighth round (driven by held-out round
8's failures, each tested here with other words than the suite's): chat shorthand read as the
words it stands for ("w/", "u", "pls", "whats", "on thu"), and a person named with a title or by
name and address is one attendee."""

from __future__ import annotations

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused
from baton_planner.offline.words import plain_words

CATALOGUE = Catalogue(DEPLOYED_TOOLS)


def _plan(request: str) -> dict:
    plan = OfflinePlanner(CATALOGUE).plan_sync(request, {})
    validate_plan(plan, CATALOGUE, {})
    return plan


def _tools(request: str) -> list[str]:
    return [s["tool"] for s in _plan(request)["steps"]]


def test_shorthand_is_spelled_out_but_quotes_urls_and_files_are_kept() -> None:
    assert plain_words("can u book a call w/ ivo on thu") == (
        "can you book a call with ivo on thursday"
    )
    kept = "pls write 'u w/ me' to u.txt from https://x.example/u/w/"
    assert plain_words(kept) == "please write 'u w/ me' to u.txt from https://x.example/u/w/"


def test_a_meeting_arranged_in_chat_shorthand_is_booked_not_waited_for() -> None:
    plan = _plan("could u set up a 45 min review w/ pia and tom on fri")
    assert [s["tool"] for s in plan["steps"]] == ["calendar.find_slots", "calendar.create_event"]
    find = plan["steps"][0]["input"]
    assert find["attendees"] == ["pia", "tom"]
    assert find["duration_minutes"] == 45
    assert find["window_start"] == "friday"


def test_whats_without_its_apostrophe_still_asks_for_the_agenda() -> None:
    assert _tools("whats on my agenda friday") == ["calendar.list_events"]


@pytest.mark.parametrize(
    ("request_", "attendees"),
    [
        (
            "set up a call with Dr. Okafor (okafor@clinic.example) on monday",
            ["okafor@clinic.example"],
        ),
        ("is mrs ruiz free on tuesday?", ["ruiz"]),
    ],
)
def test_a_title_or_a_name_with_its_address_is_one_attendee(
    request_: str, attendees: list[str]
) -> None:
    assert _plan(request_)["steps"][0]["input"]["attendees"] == attendees


def test_a_sentence_that_tells_the_situation_is_no_task() -> None:
    tools = _tools(
        "We're closing the quarter this week. Please read sales.md and summarise it into q.md"
    )
    assert tools == ["files.read", "llm.generate", "files.write"]
    tools = _tools(
        "my laptop has been slow all day and i need answers. read perf.log then summarise it"
    )
    assert tools == ["files.read", "llm.generate"]


@pytest.mark.parametrize(
    "request_",
    ["remind me tomorrow to renew the domain", "tell my boss the deploy is done", "call my mum"],
)
def test_telling_or_reminding_a_person_is_asked_about(request_: str) -> None:
    with pytest.raises(PlanRefused):
        _plan(request_)


def test_telling_me_or_calling_a_url_is_still_planned() -> None:
    assert _tools("call https://api.example.com/v1/ping") == ["http.request"]
    assert _tools("tell me the version in package.json") == ["files.read", "json.query"]


def _with(*specs: ToolSpec) -> Catalogue:
    return Catalogue((*DEPLOYED_TOOLS, *specs))


def _numbered(name: str, description: str, field: str, number: str) -> ToolSpec:
    shape = {
        "type": "object",
        "properties": {field: {"type": "string"}, number: {"type": "integer", "minimum": 1}},
        "required": [field],
    }
    return ToolSpec(
        name=name,
        description=description,
        input_schema=shape,
        output_schema={"type": "object"},
        text_field=field,
    )


def test_a_number_field_takes_the_number_before_its_name_or_how_many() -> None:
    tides = _numbered("sea.tides", "The tide times of a harbour for some days.", "harbour", "days")
    builds = _numbered(
        "mcp.ci.list_builds", "List the latest builds of a project.", "project", "limit"
    )
    catalogue = _with(tides, builds)
    plan = OfflinePlanner(catalogue).plan_sync("tide times in brest for the next 4 days", {})
    assert plan["steps"][0]["input"] == {"harbour": "brest", "days": 4}
    plan = OfflinePlanner(catalogue).plan_sync("list the 7 latest builds of the atlas project", {})
    assert plan["steps"][0]["input"]["limit"] == 7


def test_a_hyphenated_system_name_is_a_name_not_a_verb() -> None:
    builds = _numbered(
        "mcp.ci.list_builds", "List the latest builds of a project.", "project", "limit"
    )
    plan = OfflinePlanner(_with(builds)).plan_sync("show the 3 newest builds of payments-api", {})
    assert [s["tool"] for s in plan["steps"]] == ["mcp.ci.list_builds"]
    assert plan["steps"][0]["input"]["project"] == "payments-api"


def test_a_list_after_a_colon_without_and_fans_out() -> None:
    plan = _plan("draft a tagline for each of these products: atlas, beacon, comet")
    assert [s["tool"] for s in plan["steps"]] == ["llm.generate"] * 3
    assert all(not s.get("depends_on") for s in plan["steps"])


def test_a_leading_condition_without_a_comma_gates_the_task_after_it() -> None:
    plan = _plan(
        "check https://api.example.org/health; if it comes back 502 post 'api sick' to "
        "https://hooks.example.org/ops"
    )
    assert [s["tool"] for s in plan["steps"]] == ["http.request", "http.request"]
    gated = plan["steps"][1]
    assert "502" in gated["when"]


def test_a_bare_list_of_fields_after_a_fetch_is_picked_each() -> None:
    plan = _plan("download https://api.example.org/v1/sensor.json and extract pressure, altitude")
    queries = [s["input"]["path"] for s in plan["steps"] if s["tool"] == "json.query"]
    assert sorted(queries) == ["altitude", "pressure"]
