"""The offline planner's general mechanisms of issue 30's seventh round (driven by held-out round
7's failures, each tested here with other words than the suite's): a text field that names a
thing takes the name (not the whole sentence), clauses that only greet or say how often, delete
and pay synonyms, approvals in the perfect tense after a role, a list of kept fields, a condition
on the task before ("X; if it returns 500, Y") or without a comma, the apostrophe that is no
quote, a send of an answer, extracting "from it", and a vague object with a time word."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused
from baton_planner.quality import load_part

BENCH = Path(__file__).resolve().parents[4] / "bench"


def _spec(name: str, description: str, field: str) -> ToolSpec:
    shape = {"type": "object", "properties": {field: {"type": "string"}}, "required": [field]}
    return ToolSpec(
        name=name,
        description=description,
        input_schema=shape,
        output_schema={"type": "object"},
        text_field=field,
    )


ZONES = _spec("geo.time_zone", "The time zone and the local time of a city.", "city")
RELEASES = _spec(
    "mcp.ship.list_releases", "List the latest releases of a product with their date.", "product"
)
CATALOGUE = Catalogue((*DEPLOYED_TOOLS, ZONES, RELEASES))


def _plan(request: str, catalogue: Catalogue = CATALOGUE) -> dict:
    plan = OfflinePlanner(catalogue).plan_sync(request, {})
    validate_plan(plan, catalogue, {})
    return plan


def _steps(request: str, catalogue: Catalogue = CATALOGUE) -> list[tuple[str, dict]]:
    return [(s["tool"], s) for s in _plan(request, catalogue)["steps"]]


@pytest.mark.parametrize(
    ("request_", "tool", "field", "value"),
    [
        ("what's the local time in lagos right now?", "geo.time_zone", "city", "lagos"),
        ("which time zone is cape town on?", "geo.time_zone", "city", "cape town"),
        (
            "list the newest releases of photon please",
            "mcp.ship.list_releases",
            "product",
            "photon",
        ),
    ],
)
def test_a_field_that_names_a_thing_takes_the_name_not_the_sentence(
    request_: str, tool: str, field: str, value: str
) -> None:
    (step,) = [s for t, s in _steps(request_) if t == tool]
    assert step["input"][field] == value


def test_each_item_of_a_list_is_the_name_of_its_own_step() -> None:
    steps = _steps("local time in quito, hanoi and perth please")
    assert sorted(s["input"]["city"] for _, s in steps) == ["hanoi", "perth", "quito"]


def test_a_thing_not_named_is_asked_about_not_filled_with_the_sentence() -> None:
    with pytest.raises(PlanRefused, match="city"):
        _plan("what's the local time zone?")


@pytest.mark.parametrize(
    ("request_", "tools"),
    [
        ("Hello! read minutes.md and summarise it. Cheers", ["files.read", "llm.generate"]),
        ("every evening at 9, fetch https://x.example.org/a.json", ["http.request"]),
        ("each weekday, delete scratch.tmp. thx", ["files.delete"]),
    ],
)
def test_clauses_that_only_greet_or_say_how_often_are_not_tasks(
    request_: str, tools: list[str]
) -> None:
    assert [t for t, _ in _steps(request_)] == tools


def test_purge_deletes_and_wire_pays() -> None:
    assert [t for t, _ in _steps("purge stale.log")] == ["files.delete"]
    (critical,) = _steps("wire 300 to initrode")
    assert critical[0] == "mock.critical" and critical[1].get("requires_approval", True)


def test_an_approval_in_the_perfect_tense_after_a_role_names_the_people() -> None:
    ((tool, step),) = _steps("remove draft.md once the two editors, ida and per, have signed off")
    assert tool == "files.delete"
    assert sorted(step["approval"]["approvers"]) == ["ida", "per"]


def test_a_list_of_kept_fields_stays_whole_even_with_a_verb_like_name() -> None:
    steps = _steps("fetch https://api.example.org/p/1 and keep only the sku, email and price")
    assert sorted(s["input"]["path"] for t, s in steps if t == "json.query") == [
        "email",
        "price",
        "sku",
    ]


def test_a_condition_on_the_task_before_and_one_without_a_comma() -> None:
    steps = dict(
        _steps("fetch https://a.example.org/up; if it returns 404, write 'gone' to gone.txt")
    )
    assert "when" in steps["files.write"] and steps["files.write"]["input"]["content"] == "gone"
    steps = dict(
        _steps(
            "read stats.json, then pick out the errors field, and if it's above 10 write 'noisy' to n.txt"
        )
    )
    assert "when" in steps["files.write"] and steps["files.write"]["input"]["path"] == "n.txt"


def test_the_apostrophe_of_a_contraction_opens_no_quote() -> None:
    from baton_planner.offline import words

    assert words.quoted("Here's my note: 'ship it', it's late") == ["ship it"]


def test_a_send_of_an_answer_sends_the_earlier_result() -> None:
    part = load_part(BENCH / "planner_suite_agents.yaml")
    plan = _plan(
        "look up the customer wayne corp and post who owns the account to #accounts",
        part.catalogue,
    )
    post = next(s for s in plan["steps"] if s["tool"] == "chat.post_message")
    assert post["input"]["text"].startswith("${steps.") and post["depends_on"]


def test_extracting_from_it_reads_the_earlier_result() -> None:
    steps = _steps("read ledger.txt and pull the totals from it")
    assert [t for t, _ in steps] == ["files.read", "llm.generate"]
    assert steps[1][1]["depends_on"]


def test_a_vague_object_with_a_time_word_is_asked_about() -> None:
    with pytest.raises(PlanRefused):
        _plan("check the stuff from earlier")


def test_a_database_file_is_a_file() -> None:
    steps = _steps("wait 10 seconds before deleting sessions.sqlite")
    assert [t for t, _ in steps] == ["time.sleep", "files.delete"]
    assert steps[1][1]["input"]["path"] == "sessions.sqlite"
