"""Drafts over the planner's request/reply subject (``PlanCall`` op ``draft``): the plan with why
each step is there, or a 422 that says what was understood; nothing is recorded."""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_planner.drafting import draft_reply
from baton_planner.offline import OfflinePlanner


def _call(body: Any) -> c.PlanCall:
    return c.PlanCall(op="draft", workspace_id="default", actor="ann", body=body)


async def test_a_draft_carries_the_plan_its_explanation_and_the_planner() -> None:
    reply = await draft_reply(
        OfflinePlanner(DEFAULT_CATALOGUE), _call({"request": "read notes.md and summarise it"})
    )
    assert reply.status == 200, reply.detail
    tools = [s["tool"] for s in reply.body["plan"]["steps"]]
    assert tools == ["files.read", "llm.generate"] and reply.body["planner"] == "offline"
    assert {e["step"] for e in reply.body["explanation"]} == {
        s["id"] for s in reply.body["plan"]["steps"]
    }


async def test_an_unclear_request_is_a_422_with_what_was_understood() -> None:
    words = "read notes.md and then frobnicate it"
    reply = await draft_reply(OfflinePlanner(DEFAULT_CATALOGUE), _call({"request": words}))
    assert reply.status == 422 and reply.detail.startswith("planning failed: ")
    assert reply.body["understood"] == ["'read notes.md' → files.read"]
    assert "frobnicate" in reply.body["not_understood"][0] and reply.body["suggestion"]


async def test_a_call_without_words_is_a_422_not_a_crash() -> None:
    planner = OfflinePlanner(DEFAULT_CATALOGUE)
    for body in ({}, {"request": "  "}, {"request": "read a.md", "inputs": []}):
        reply = await draft_reply(planner, _call(body))
        assert reply.status == 422 and "request" in reply.detail


async def test_a_planner_that_does_not_explain_itself_gives_each_step_its_description() -> None:
    class Plain:
        name = "plain"

        async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"steps": [{"id": "a", "tool": "text.template", "description": "say hi"}]}

    reply = await draft_reply(Plain(), _call({"request": "say hi", "inputs": {}}))  # type: ignore[arg-type]
    assert reply.status == 200
    assert reply.body["explanation"] == [
        {
            "step": "a",
            "tool": "text.template",
            "task": "say hi",
            "words": [],
            "why": "chosen by the plain planner",
        }
    ]
