"""The offline planner's general mechanisms of issue 30's fourth round: tools by what their
descriptions mean, values listed for a constrained field, calendar questions as frames, a
template's values given in a later clause, and data that is only a word ("the api")."""

from __future__ import annotations

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused


def _tool(name: str, description: str, field: str, **schema: str) -> ToolSpec:
    """A tool of one required string field, known only by its name and description."""
    properties = {field: {"type": "string", **schema}}
    shape = {"type": "object", "properties": properties, "required": [field]}
    return ToolSpec(
        name=name,
        description=description,
        input_schema=shape,
        output_schema={"type": "object"},
        text_field=None if schema else field,  # as an MCP tool's: its one free string field
    )


TIDES = _tool(
    "coast.tides", "High and low water times for a harbour, for the coming week.", "harbour"
)
FLIGHTS = _tool(
    "air.status",
    "Whether a flight is on time, delayed or cancelled, by its flight number.",
    "flight",
    pattern="^[A-Z]{2}[0-9]{2,4}$",
)
CATALOGUE = Catalogue((*DEPLOYED_TOOLS, TIDES, FLIGHTS))


def _tools(request: str, catalogue: Catalogue = CATALOGUE) -> list[str]:
    planner = OfflinePlanner(catalogue)
    plan = planner.plan_sync(request, {})
    validate_plan(plan, catalogue, {})
    return [s["tool"] for s in plan["steps"]]


def test_a_tool_is_chosen_by_what_its_description_means() -> None:
    # no word of the request is a word of the tool's name, keywords or description
    assert _tools("when does the ocean rise in dover?") == ["coast.tides"]


def test_a_request_near_no_described_tool_is_still_refused() -> None:
    with pytest.raises(PlanRefused):
        _tools("frobnicate the quarterly widgets")


def test_values_listed_for_a_constrained_field_fan_out() -> None:
    planner = OfflinePlanner(CATALOGUE)
    plan = planner.plan_sync("status of flights BA117, LH400 and AF22", {})
    assert [s["input"] for s in plan["steps"]] == [
        {"flight": "BA117"},
        {"flight": "LH400"},
        {"flight": "AF22"},
    ]


@pytest.mark.parametrize(
    ("request_", "tool"),
    [
        ("are dana and eli around on friday?", "calendar.find_slots"),
        ("could pia squeeze in a call on monday?", "calendar.find_slots"),
        ("which appointments have I got tomorrow?", "calendar.list_events"),
        ("show me my calls for thursday", "calendar.list_events"),
    ],
)
def test_calendar_questions_are_read_as_frames(request_: str, tool: str) -> None:
    assert _tools(request_) == [tool]


def test_a_later_clause_of_values_fills_the_template_before_it() -> None:
    planner = OfflinePlanner(CATALOGUE)
    (step,) = planner.plan_sync("use 'Ticket {key} closed' and populate it with key=OPS-7", {})[
        "steps"
    ]
    assert step["input"] == {"template": "Ticket {key} closed", "values": {"key": "OPS-7"}}


def test_the_word_api_alone_is_no_json_data() -> None:
    assert _tools("check the health of the api and the queue") == ["mock.agent", "mock.agent"]
