"""The offline planner's general mechanisms of issue 30's sixth round (driven by held-out round
6's failures, each tested here with other words than the suite's): arranging verbs and meeting
nouns, "book it", "A before doing B", fields asked for by name, questions about a file's text,
one summary per named source, phrases put into languages, lists that lead or are a question's
subject, vague objects, and described tools found by their family, not by a verb alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from baton_common.catalogue import DEFAULT_CATALOGUE, DEPLOYED_TOOLS, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused
from baton_planner.quality import load_part

BENCH = Path(__file__).resolve().parents[4] / "bench"


def _spec(name: str, description: str, field: str, keywords: list[str]) -> ToolSpec:
    """A tool as the executor lists an MCP server's: one required string field."""
    shape = {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}
    return ToolSpec(
        name=name,
        description=description,
        input_schema=shape,
        output_schema={"type": "object"},
        keywords=tuple(keywords),
        text_field=field,
    )


HANDBOOK = _spec(
    "mcp.handbook.find_sections",
    "Find sections of the company handbook whose text matches a query.",
    "query",
    ["find", "sections"],
)
RELEASES = _spec(
    "mcp.ship.list_releases",
    "List the latest releases of a product with their version and date.",
    "product",
    ["list", "releases"],
)
CATALOGUE = Catalogue((*DEPLOYED_TOOLS, HANDBOOK, RELEASES))


def _plan(request: str, catalogue: Catalogue = CATALOGUE) -> dict:
    plan = OfflinePlanner(catalogue).plan_sync(request, {})
    validate_plan(plan, catalogue, {})
    return plan


def _tools(request: str, catalogue: Catalogue = CATALOGUE) -> list[str]:
    return [s["tool"] for s in _plan(request, catalogue)["steps"]]


@pytest.mark.parametrize(
    "request_",
    [
        "slot in a workshop with hana and ole on tuesday",
        "block 40 minutes with sven@corp.example on friday",
        "we need a debrief with the pilots, kai and rune, tomorrow",
        "there's a 20 minute screening slot with ines on monday, book it",
    ],
)
def test_arranging_a_meeting_finds_a_slot_and_books_it(request_: str) -> None:
    plan = _plan(request_)
    assert [s["tool"] for s in plan["steps"]] == ["calendar.find_slots", "calendar.create_event"]
    assert plan["steps"][0]["input"]["attendees"]


def test_booking_words_asked_about_someone_stay_a_question() -> None:
    assert _tools("could lars fit in a walkthrough on friday?") == ["calendar.find_slots"]


@pytest.mark.parametrize(
    ("request_", "tool", "people"),
    [
        (
            "tell me whether dora and eli are free on wednesday",
            "calendar.find_slots",
            ["dora", "eli"],
        ),
        (
            "can fay, gil and hal all do an hour on friday?",
            "calendar.find_slots",
            ["fay", "gil", "hal"],
        ),
    ],
)
def test_availability_questions_name_their_people(request_: str, tool: str, people: list) -> None:
    plan = _plan(request_)
    assert [s["tool"] for s in plan["steps"]] == [tool]
    assert plan["steps"][0]["input"]["attendees"] == people


def test_what_is_on_my_plate_lists_the_day() -> None:
    plan = _plan("what's on my plate on thursday?")
    assert [s["tool"] for s in plan["steps"]] == ["calendar.list_events"]
    assert plan["steps"][0]["input"]["window_start"] == "thursday"


def test_a_one_hour_meeting_lasts_an_hour() -> None:
    plan = _plan("book a one-hour review with ann on monday")
    assert plan["steps"][0]["input"]["duration_minutes"] == 60


def test_a_before_doing_b_runs_a_first() -> None:
    steps = _plan("sleep ten minutes before removing stale.lock")["steps"]
    assert [s["tool"] for s in steps] == ["time.sleep", "files.delete"]
    assert steps[1]["depends_on"] == [steps[0]["id"]]


@pytest.mark.parametrize(
    ("request_", "paths"),
    [
        ("open config.json and give me the port", ["port"]),
        (
            "fetch https://api.example.com/v1/me and pull out the plan and the quota",
            ["plan", "quota"],
        ),
        ("read app.json - the only things I need are the name and the build", ["name", "build"]),
    ],
)
def test_fields_asked_for_by_name_are_picked_out_of_json(request_: str, paths: list) -> None:
    steps = _plan(request_)["steps"]
    assert [s["input"]["path"] for s in steps if s["tool"] == "json.query"] == paths


def test_a_question_about_a_files_text_is_answered_by_the_model_with_it_read() -> None:
    assert _tools("which cities are named in trip.md?") == ["files.read", "llm.generate"]
    assert _tools("what's in trip.md?") == ["files.read"]


def test_extraction_from_a_web_page_or_into_a_file_goes_to_the_model() -> None:
    assert _tools("pick out the prices from https://shop.example.com/sale") == [
        "http.request",
        "llm.generate",
    ]
    assert _tools("extract the urls from refs.md into urls.txt") == [
        "files.read",
        "llm.generate",
        "files.write",
    ]


def test_a_summary_of_named_files_is_one_per_file_each_told_of_its_own() -> None:
    steps = _plan("summarise jan.md and feb.md")["steps"]
    prompts = [s["input"]["prompt"] for s in steps if s["tool"] == "llm.generate"]
    assert len(prompts) == 2 and "jan.md" in prompts[0] and "feb.md" in prompts[1]
    assert _tools("compare jan.md with feb.md").count("llm.generate") == 1


@pytest.mark.parametrize(
    "request_",
    [
        "turn 'good luck' into danish, dutch and czech",
        "for oslo, lima and pune, suggest a dish each",
        "come up with a name for our cat, dog and parrot",
        "give me a riddle about each season - spring, summer and autumn",
    ],
)
def test_one_text_per_listed_item(request_: str) -> None:
    steps = _plan(request_)["steps"]
    assert [s["tool"] for s in steps] == ["llm.generate"] * 3
    assert all(not s["depends_on"] for s in steps)


def test_a_list_as_a_questions_subject_fans_out() -> None:
    request = "find out how much acme, initech and globex charge for hosting"
    assert _tools(request, DEFAULT_CATALOGUE) == ["mock.agent"] * 3


@pytest.mark.parametrize("request_", ["summarise this", "book something", "send that to sales"])
def test_requests_naming_nothing_are_asked_about(request_: str) -> None:
    with pytest.raises(PlanRefused):
        _plan(request_)


def test_an_mcp_servers_name_is_a_family_the_request_can_name() -> None:
    assert _tools("check the handbook for the parental leave rules") == [
        "mcp.handbook.find_sections"
    ]


def test_a_described_tool_met_only_by_the_verb_is_no_match() -> None:
    # "list" is mcp.ship.list_releases' keyword, but the holidays are no releases
    tools = _tools("read memo.md and list the deadlines in it")
    assert tools == ["files.read", "llm.generate"]


def test_an_issues_text_is_not_its_intent() -> None:
    # the suite's agent files and MCP tools: "search page" is the bug's text, not a wiki search
    catalogue = load_part(BENCH / "planner_suite_agents.yaml").catalogue
    assert _tools("log a bug saying the search page shows nothing", catalogue) == ["tickets.open"]


def test_no_suite_request_lost_words_to_a_yaml_comment() -> None:
    """An unquoted request with " #ops" in it is cut there by YAML: quote it."""
    for table in sorted(BENCH.glob("planner_*.yaml")):
        lines = [
            x.split("request:", 1)[1].strip()
            for x in table.read_text().splitlines()
            if x.strip().startswith("- request:")
        ]
        cases = (yaml.safe_load(table.read_text()) or {}).get("cases") or []
        for raw, case in zip(lines, cases, strict=True):
            if raw[:1] not in "\"'":
                assert raw.split(" #", 1)[0].strip() == case["request"], (table.name, raw)
                assert " #" not in raw.split("  #", 1)[0], (table.name, raw)
