"""The offline planner on the request shapes the issue named: reads before, saves after,
templates, conditions, approvals, plugin tools, explanations and honest refusals."""

from __future__ import annotations

import pytest
from baton_common.catalogue import BUILTIN_TOOLS, Catalogue, ToolSpec
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner, PlanRefused, render


def _plan(request: str, catalogue: Catalogue | None = None, **inputs: object) -> dict:
    planner = OfflinePlanner(catalogue) if catalogue else OfflinePlanner()
    plan = planner.plan_sync(request, dict(inputs))
    validate_plan(plan, planner.catalogue, dict(inputs))
    return plan


def _by_tool(plan: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for step in plan["steps"]:
        found.setdefault(step["tool"], []).append(step)
    return found


def test_a_file_to_summarise_is_read_first() -> None:
    read, summary = _plan("summarise report.md")["steps"]
    assert (read["tool"], read["input"]) == ("files.read", {"path": "report.md"})
    assert summary["input"]["context"] == ["${steps.read_report_md.output.content}"]


def test_a_template_fills_its_placeholders() -> None:
    (step,) = _plan("fill the template 'Hello {name}' with name=Ann")["steps"]
    assert step["tool"] == "text.template"
    assert step["input"] == {"template": "Hello {name}", "values": {"name": "Ann"}}
    (from_inputs,) = _plan("render the template 'Dear {customer}'", customer="Bo")["steps"]
    assert from_inputs["input"]["values"] == {"customer": "${input.customer}"}


def test_merge_reads_both_and_writes_the_third() -> None:
    steps = _by_tool(_plan("merge a.txt and b.txt into c.txt"))
    assert [s["input"]["path"] for s in steps["files.read"]] == ["a.txt", "b.txt"]
    (write,) = steps["files.write"]
    assert write["input"]["path"] == "c.txt"
    assert write["input"]["content"] == (
        "${steps.read_a_txt.output.content}\n\n${steps.read_b_txt.output.content}"
    )


def test_translate_and_save_reads_translates_and_writes() -> None:
    plan = _plan("translate readme.md into german and save it to readme.de.md")
    assert [s["tool"] for s in plan["steps"]] == ["files.read", "llm.generate", "files.write"]
    assert plan["steps"][2]["input"]["path"] == "readme.de.md"
    assert plan["steps"][2]["depends_on"] == [plan["steps"][1]["id"]]


def test_append_switches_the_option_on() -> None:
    (step,) = _plan("append 'done' to log.txt")["steps"]
    assert step["input"] == {"path": "log.txt", "content": "done", "append": True}


def test_a_json_field_from_a_url_is_fetched_then_picked() -> None:
    fetch, pick = _plan("get the version field from https://api.example.com/info")["steps"]
    assert fetch["input"]["method"] == "GET"
    assert pick["input"] == {"data": f"${{steps.{fetch['id']}.output.json}}", "path": "version"}


def test_if_then_otherwise_becomes_conditions_on_the_checked_status() -> None:
    plan = _plan(
        "if https://example.com/health is down then post an alert to https://hooks.example.com/p,"
        " otherwise write 'ok' to status.txt"
    )
    check, alert, other = plan["steps"]
    assert check["input"]["expect_status"][-1] == 504  # an error status is an answer here
    assert alert["when"] == f"${{steps.{check['id']}.output.status}} >= 400"
    assert other["when"] == f"not ${{steps.{check['id']}.output.status}} >= 400"
    assert alert["id"] not in other["depends_on"]  # the other branch is not skipped with it
    assert not any(ref in str(plan.get("outputs")) for ref in (alert["id"], other["id"]))


@pytest.mark.parametrize(
    ("request_", "gate"),
    [
        ("get approval from bob, then delete old.log", {"approval": {"approvers": ["bob"]}}),
        ("delete old.log once approved", {"requires_approval": True}),
    ],
)
def test_approvals_gate_the_step(request_: str, gate: dict) -> None:
    (step,) = _plan(request_)["steps"]
    assert step["tool"] == "files.delete" and gate.items() <= step.items()


def test_a_plugin_tool_is_matched_by_its_description_and_schema() -> None:
    slack = ToolSpec(
        name="slack.post_message",
        description="Post a message to a Slack channel.",
        input_schema={
            "type": "object",
            "properties": {"channel": {"type": "string"}, "text": {"type": "string"}},
            "required": ["channel", "text"],
        },
        output_schema={"type": "object", "properties": {"ts": {"type": "string"}}},
        keywords=("slack",),
        text_field="text",
        primary_output="ts",
    )
    catalogue = Catalogue((*BUILTIN_TOOLS, slack))
    plan = _plan("read notes.md, summarise it and send it to slack", catalogue, channel="#ops")
    assert [s["tool"] for s in plan["steps"]] == ["files.read", "llm.generate", slack.name]
    assert plan["steps"][2]["input"]["channel"] == "${input.channel}"
    assert plan["steps"][2]["depends_on"] == ["summarise"]


def test_every_step_is_explained_with_its_words() -> None:
    draft = OfflinePlanner().draft("read notes.md and summarise it into summary.md")
    assert [e.step for e in draft.explanation] == [s["id"] for s in draft.plan["steps"]]
    read, summary, save = draft.explanation
    assert read.words == ["read"] and "files.read" in read.why
    assert summary.words == ["summarise"] and "reads read_notes" in summary.why
    assert "'summary.md'" in save.why
    assert f"{summary.step}  →  llm.generate" in render(draft.explanation)


def test_a_missing_value_is_asked_for_not_guessed() -> None:
    with pytest.raises(PlanRefused) as refused:
        OfflinePlanner().plan_sync("check conflicts for ann on monday at 10:00")
    assert "needs start, end" in str(refused.value)
    assert "2030-01-02T10:00Z" in refused.value.suggestion


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (
            "keep retrying https://flaky.example.com until it answers",
            {"retry": {"max_attempts": 10}},
        ),
        ("fetch https://example.com/a and retry 3 times", {"retry": {"max_attempts": 4}}),
        ("fetch https://example.com/a with a timeout of 2 minutes", {"timeout": 120.0}),
    ],
)
def test_retries_and_timeouts_in_words_become_step_policies(request_: str, fields: dict) -> None:
    (step,) = _plan(request_)["steps"]
    assert step["tool"] == "http.request" and fields.items() <= step.items()
    assert "policies" not in step["input"] and "retry" not in step["description"].lower()


def _notes_tool(name: str, side_effect: str, description: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        output_schema={"type": "object", "properties": {"id": {"type": "string"}}},
        side_effect=side_effect,  # type: ignore[arg-type]
        text_field="text",
        primary_output="id",
    )


@pytest.mark.parametrize(
    ("request_", "tool"),
    [
        ("add 'buy milk' to my notes", "notes.add"),
        ("search for 'milk' in my notes", "notes.search"),
    ],
)
def test_the_place_named_picks_the_tool_family_and_the_verb_its_direction(
    request_: str, tool: str
) -> None:
    catalogue = Catalogue(
        (
            *BUILTIN_TOOLS,
            _notes_tool("notes.add", "write", "Add an entry."),
            _notes_tool("notes.search", "read", "Search entries."),
        )
    )
    (step,) = _plan(request_, catalogue)["steps"]
    assert step["tool"] == tool
