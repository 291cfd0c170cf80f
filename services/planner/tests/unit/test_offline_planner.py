"""The offline planner: deterministic, valid plans with fan-out, joins and parallel tasks."""

from __future__ import annotations

import pytest
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanMemory, PlanRefused, split_tasks
from baton_planner.planners import Planner, PlanningError

DEMO = "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"

VARIED = [
    DEMO,
    "Fetch https://example.com/status and https://example.org/health, then summarise the results",
    "fetch https://api.github.com/repos/python/cpython. Read notes.txt; write a haiku about autumn",
    "wait 5 seconds then fetch https://example.com",
    "research competitors in france, germany and spain, compare them and write a report to report.md",
    "read config.json, extract the database.host field and send it to https://hooks.example.com/x",
    "translate the readme into german",
    "delete old.log",
    "check the status of the build and report it",
    "gather the latest news about ai, summarise it in three bullet points and save it",
    "look up the weather in london and paris; sleep 2 minutes; summarise everything",
    "please write a poem",
]


@pytest.fixture
def planner() -> OfflinePlanner:
    return OfflinePlanner(DEFAULT_CATALOGUE)


def _steps(plan: dict) -> dict[str, dict]:
    return {s["id"]: s for s in plan["steps"]}


async def test_it_is_a_planner(planner: OfflinePlanner) -> None:
    assert isinstance(planner, Planner) and planner.name == "offline"


async def test_same_request_same_plan(planner: OfflinePlanner) -> None:
    for request in VARIED:
        first = await planner.plan(request, {})
        assert first == await OfflinePlanner(Catalogue()).plan(request, {})


async def test_demo_fans_out_and_joins(planner: OfflinePlanner) -> None:
    plan = await planner.plan(DEMO, {})
    steps = _steps(plan)
    collects = ["collect_api", "collect_billing", "collect_search"]
    assert list(steps) == [*collects, "summarise", "save_summary"]
    for sid in collects:
        assert steps[sid]["tool"] == "mock.agent" and steps[sid]["depends_on"] == []
    assert steps["collect_billing"]["input"]["task"] == "collect incident reports for billing"
    summary = steps["summarise"]
    assert summary["tool"] == "llm.generate" and summary["depends_on"] == collects
    assert summary["input"]["context"] == [f"${{steps.{s}.output.result}}" for s in collects]
    save = steps["save_summary"]
    assert save["tool"] == "files.write" and save["depends_on"] == ["summarise"]
    assert save["input"] == {"path": "summary.md", "content": "${steps.summarise.output.text}"}
    assert plan["outputs"] == {
        "summarise": "${steps.summarise.output.text}",
        "save_summary": "${steps.save_summary.output.path}",
    }


async def test_independent_tasks_run_in_parallel(planner: OfflinePlanner) -> None:
    plan = await planner.plan(
        "fetch https://a.example.com/x. Read notes.txt; write a haiku about autumn", {}
    )
    assert [(s["tool"], s["depends_on"]) for s in plan["steps"]] == [
        ("http.request", []),
        ("files.read", []),
        ("llm.generate", []),
    ]


async def test_a_url_becomes_an_http_request(planner: OfflinePlanner) -> None:
    step = (await planner.plan("fetch https://example.com/status.json", {}))["steps"][0]
    assert step["tool"] == "http.request"
    assert step["input"] == {"url": "https://example.com/status.json", "method": "GET"}


async def test_several_urls_fan_out_and_then_orders(planner: OfflinePlanner) -> None:
    plan = await planner.plan(VARIED[1], {})
    steps = _steps(plan)
    fetches = [s for s in steps.values() if s["tool"] == "http.request"]
    assert [s["input"]["url"] for s in fetches] == [
        "https://example.com/status",
        "https://example.org/health",
    ]
    assert steps["summarise_results"]["depends_on"] == [s["id"] for s in fetches]


async def test_a_wait_orders_what_comes_after(planner: OfflinePlanner) -> None:
    wait, fetch = (await planner.plan(VARIED[3], {}))["steps"]
    assert wait["tool"] == "time.sleep" and wait["input"] == {"seconds": 5.0}
    assert fetch["depends_on"] == [wait["id"]]
    long_wait = (await planner.plan("wait 2 minutes", {}))["steps"][0]
    assert long_wait["input"]["seconds"] == 120.0 and long_wait["timeout"] > 120


async def test_enumerations_are_not_split_into_clauses() -> None:
    tasks = split_tasks(DEMO)
    assert [t.text for t in tasks] == [
        "collect incident reports for api, billing and search",
        "summarise them",
        "save the summary to summary.md",
    ]
    assert tasks[0].items == ["api", "billing", "search"]
    assert [t.text for t in split_tasks("find cheap flights and hotels in paris")] == [
        "find cheap flights and hotels in paris"
    ]


@pytest.mark.parametrize("request_text", VARIED)
async def test_every_plan_is_valid(planner: OfflinePlanner, request_text: str) -> None:
    plan = await planner.plan(request_text, {})
    validated = validate_plan(plan, DEFAULT_CATALOGUE, {})
    assert len({s.id for s in validated.steps}) == len(validated.steps)


async def test_inputs_are_referenced(planner: OfflinePlanner) -> None:
    inputs = {"endpoint": "https://x.example.com/v1"}
    plan = await planner.plan("call the api and summarise the response", inputs)
    validate_plan(plan, DEFAULT_CATALOGUE, inputs)
    assert plan["steps"][0]["input"]["url"] == "${input.endpoint}"


@pytest.mark.parametrize(
    ("request_text", "missing"),
    [
        ("zzz qqq", "no tool in the catalogue fits"),
        ("fetch the homepage", "needs a URL"),
        ("read notes.md and then zzz qqq", "'zzz qqq'"),
        ("wait until 5pm", "needs a duration"),
        ("delete the old logs", "needs a file name"),
        ("summarise the results", "nothing comes before it"),
        ("summarise notes.md, then email it to ann@example.com", "no tool in the catalogue sends"),
    ],
)
async def test_an_unclear_request_is_refused_honestly(
    planner: OfflinePlanner, request_text: str, missing: str
) -> None:
    with pytest.raises(PlanRefused) as refused:
        await planner.plan(request_text, {})
    assert missing in str(refused.value) and refused.value.suggestion
    if request_text.startswith("read notes.md"):
        assert refused.value.understood == ["'read notes.md' → files.read"]


@pytest.mark.parametrize("request_text", ["", "   ", " ... "])
async def test_an_empty_request_is_a_planning_error(
    planner: OfflinePlanner, request_text: str
) -> None:
    with pytest.raises(PlanningError, match=r"empty|no task"):
        await planner.plan(request_text, {})


async def test_a_remembered_plan_comes_first() -> None:
    planner = OfflinePlanner()
    learned = {"steps": [{"id": "only", "tool": "llm.generate", "input": {"prompt": "hi"}}]}
    planner.remember("Say hello!", validate_plan(learned))
    plan = await planner.plan("say   hello", {})
    assert plan == learned
    plan["steps"].clear()  # a caller's change must not leak into the memory
    assert planner.memory.recall("say hello") == learned


async def test_a_remembered_plan_that_no_longer_validates_is_ignored() -> None:
    memory = PlanMemory()
    request = "fetch https://example.com/it"
    memory.remember(request, {"steps": [{"id": "x", "tool": "gone.tool", "input": {}}]})
    plan = await OfflinePlanner(memory=memory).plan(request, {})
    assert plan["steps"][0]["tool"] != "gone.tool"


def test_the_memory_is_bounded() -> None:
    memory = PlanMemory(max_entries=2)
    for i in range(3):
        memory.remember(f"request {i}", {"steps": []})
    assert len(memory) == 2 and memory.recall("request 0") is None


async def test_a_custom_catalogue_is_honoured() -> None:
    tool = ToolSpec(
        name="tickets.open",
        description="Open a support ticket in the tracker.",
        input_schema={
            "type": "object",
            "properties": {"title": {"type": "string"}, "priority": {"type": "integer"}},
            "required": ["title", "priority"],
            "additionalProperties": False,
        },
        output_schema={"type": "object", "properties": {"ticket": {"type": "string"}}},
        keywords=("ticket", "issue", "bug"),
        text_field="title",
        primary_output="ticket",
    )
    catalogue = Catalogue((tool,))
    plan = await OfflinePlanner(catalogue).plan("open a ticket for the login bug", {})
    validate_plan(plan, catalogue, {})
    assert plan["steps"][0]["input"] == {"title": "open a ticket for the login bug", "priority": 0}


@pytest.mark.parametrize("text", ["0" * 20_000, "a-" * 10_000, "x=" * 10_000])
async def test_a_long_request_is_planned_or_refused_at_once(
    planner: OfflinePlanner, text: str
) -> None:
    """20,000 digits once took seconds (an e-mail pattern tried from every digit), with the
    gateway's or the planner's event loop standing still meanwhile."""
    import time

    started = time.perf_counter()
    with pytest.raises(PlanningError):
        await planner.explain(text, {})
    assert time.perf_counter() - started < 2
