"""The model planner with an OpenAI-compatible server: the real ``openai`` SDK against a local
fake of ``POST /v1/chat/completions`` (real HTTP, scripted answers; ``baton_common.fakemodels``).
The repair loop is the one Gemini's planner runs; these tests hold it for this client."""

from __future__ import annotations

import json
import socket
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.egress import EgressGuard, EgressRefused
from baton_common.fakemodels import (
    NEWS_PLAN,
    UNKNOWN_TOOL_PLAN,
    FakeOpenAI,
    fake_openai_server,
)
from baton_common.openaichat import OpenAIChat
from baton_common.plans import validate_plan
from baton_common.store import MemoryEventStore
from baton_planner.application import PlannerApp
from baton_planner.comparing import Comparison
from baton_planner.drafting import draft_reply
from baton_planner.modelplanner import ModelPlanner
from baton_planner.offline import OfflinePlanner
from baton_planner.offline.explaining import PlanRefused
from baton_planner.planners import FallbackPlanner, PlanningError, answer
from baton_planner.selection import PlannerConfigError, select_planner

# The fake model servers listen on 127.0.0.1, which an operator allows (BATON_EGRESS_ALLOW).
pytestmark = pytest.mark.usefixtures("loopback_allowed")


def _planner(url: str, **kw: Any) -> ModelPlanner:
    client = OpenAIChat("local-model", base_url=url, api_key="sk-test", timeout_s=5)
    return ModelPlanner(client, **kw)


def _env(url: str, **more: str) -> dict[str, str]:
    return {"BATON_LLM_MODEL": "local-model", "OPENAI_BASE_URL": url, **more}


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


async def test_a_valid_plan_first_time(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(NEWS_PLAN)
    made = await _planner(fake_openai.url).answer("collect the news and summarise it", {})
    assert made.plan == NEWS_PLAN and (made.planner, made.model) == ("openai", "local-model")
    assert made.attempts == 1 and not made.estimated
    sent = fake_openai.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["authorization"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "local-model" and body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert "mock.agent" in schema["properties"]["steps"]["items"]["properties"]["tool"]["enum"]
    # the server's own counts (the fake counts words), not an estimate from characters
    said = sum(len(m["content"].split()) for m in body["messages"])
    assert (made.input_tokens, made.output_tokens) == (said, len(json.dumps(NEWS_PLAN).split()))


async def test_an_invalid_plan_goes_back_with_the_validator_errors(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(UNKNOWN_TOOL_PLAN, "sorry, no JSON today", NEWS_PLAN)
    planner = _planner(fake_openai.url)
    made = await planner.answer("collect the news and summarise it", {})
    validate_plan(made.plan)
    assert made.attempts == 3 and made.facts()["repairs"] == 2
    assert "unknown tool 'web.scrape'" in fake_openai.prompt_of(1)
    assert "Validation errors" in fake_openai.prompt_of(1)
    assert "not JSON" in fake_openai.prompt_of(2)
    assert planner.tally["plans"] == 1 and planner.tally["repaired"] == 1
    assert planner.tally["attempts"] == 3 and planner.tally["input_tokens"] > 0


async def test_a_model_that_never_gets_it_right_asks_the_person(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(*[UNKNOWN_TOOL_PLAN] * 3)
    planner = _planner(fake_openai.url)  # two repairs by default: three attempts
    with pytest.raises(PlanRefused) as caught:  # a question to the person, not a dead end
        await planner.plan("scrape x", {})
    assert caught.value.unclear == ["scrape x"] and caught.value.question is None
    assert len(fake_openai.requests) == 3
    said = str(caught.value)
    assert "The OpenAI-compatible model (local-model) gave no valid plan in 3 attempts" in said
    assert "unknown tool 'web.scrape'" in said
    assert caught.value.problems and not caught.value.transient  # no fallback: it answered
    assert planner.tally["failed"] == 1 and planner.tally["plans"] == 0


async def test_the_model_may_ask_a_question_instead_of_a_plan(fake_openai: FakeOpenAI) -> None:
    asked = {
        "question": {
            "question": "Which report should be sent, and to whom?",
            "understood": ["send a report"],
            "missing": ["which report", "the recipient"],
            "choices": ["the weekly sales report"],
        }
    }
    fake_openai.reply_json(asked)
    planner = _planner(fake_openai.url)
    with pytest.raises(PlanRefused) as caught:
        await planner.plan("send the report", {})
    refused = caught.value
    assert refused.question == (
        "Which report should be sent, and to whom? (for example: the weekly sales report)"
    )
    assert refused.understood == ["send a report"]
    assert refused.not_understood == ["which report", "the recipient"]
    assert len(fake_openai.requests) == 1 and not refused.transient  # asked, not repaired
    assert planner.tally["asked"] == 1 and planner.tally["failed"] == 0
    body = fake_openai.requests[0]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["anyOf"] == [{"required": ["steps"]}, {"required": ["question"]}]
    assert "answer with a question instead" in body["messages"][-1]["content"]


async def test_the_number_of_repairs_is_a_setting(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(UNKNOWN_TOOL_PLAN, NEWS_PLAN)
    planner = select_planner(env=_env(fake_openai.url, BATON_PLANNER_MAX_REPAIRS="0"))
    with pytest.raises(PlanningError, match="in 1 attempts"):
        await planner.plan("collect the news", {})
    assert len(fake_openai.requests) == 1
    with pytest.raises(PlannerConfigError, match="BATON_PLANNER_MAX_REPAIRS"):
        select_planner(env=_env(fake_openai.url, BATON_PLANNER_MAX_REPAIRS="many"))


async def test_a_server_without_json_schema_gets_json_object() -> None:
    with fake_openai_server(schemas_refused=True) as fake:
        fake.reply_json(NEWS_PLAN, NEWS_PLAN)
        planner = _planner(fake.url)
        assert await planner.plan("collect the news and summarise it", {}) == NEWS_PLAN
        assert await planner.plan("collect the news and summarise them", {}) == NEWS_PLAN
        forms = [r["body"]["response_format"]["type"] for r in fake.requests]
    assert forms == ["json_schema", "json_object", "json_object"]  # asked once, then remembered


async def test_an_unreachable_server_is_transient_and_may_fall_back() -> None:
    with pytest.raises(PlanningError, match="cannot be reached") as caught:
        await _planner(_closed_url()).plan("collect the news", {})
    assert caught.value.transient and "local-model" in str(caught.value)
    planner = select_planner(env=_env(_closed_url(), BATON_PLANNER_FALLBACK="offline"))
    assert isinstance(planner, FallbackPlanner)
    made = await answer(planner, "collect the news and summarise it", {})
    assert made.planner == "offline" and made.model is None  # it says who really answered


async def test_an_endpoint_on_an_internal_address_is_refused_by_the_egress_guard(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PlanningError) as caught:  # a server on the cluster's private network
        await _planner("http://10.255.255.1:8000/v1").plan("collect the news", {})
    said = str(caught.value)
    assert "endpoint http://10.255.255.1:8000/v1 is not reached" in said
    assert "10.255.255.1 is a private address (set BATON_EGRESS_ALLOW" in said
    assert not caught.value.transient  # a setting to change: no fallback, no retry
    monkeypatch.delenv("BATON_EGRESS_ALLOW")  # loopback, as any internal address, once not allowed
    with pytest.raises(PlanningError, match=r"127\.0\.0\.1 is a loopback address"):
        await _planner(fake_openai.url).plan("collect the news", {})
    assert not fake_openai.requests
    # allowed for the model clients alone: the model is reached, a step's call still is not
    monkeypatch.setenv("BATON_LLM_EGRESS_ALLOW", "127.0.0.1")
    fake_openai.reply_json(NEWS_PLAN)
    assert await _planner(fake_openai.url).plan("collect the news", {}) == NEWS_PLAN
    with pytest.raises(EgressRefused, match="loopback"):
        await EgressGuard.from_settings().check_url(fake_openai.url)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_is_not_transient(fake_openai: FakeOpenAI, status: int) -> None:
    fake_openai.reply_error(status, "Incorrect API key provided")
    with pytest.raises(PlanningError, match=f"rejected the API key \\(HTTP {status}\\)") as caught:
        await _planner(fake_openai.url).plan("collect the news", {})
    assert "OPENAI_API_KEY" in str(caught.value) and not caught.value.transient


def test_selection_by_environment(fake_openai: FakeOpenAI) -> None:
    planner = select_planner(env={**_env(fake_openai.url), "GEMINI_API_KEY": "k"})
    assert isinstance(planner, ModelPlanner) and planner.name == "openai"  # named model wins
    assert planner.client.model == "local-model"
    hosted = select_planner(env={"BATON_LLM_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk"})
    assert isinstance(hosted, ModelPlanner) and hosted.client.base_url is None
    with pytest.raises(PlannerConfigError, match="neither OPENAI_BASE_URL"):
        select_planner(env={"BATON_LLM_MODEL": "llama3.2"})
    assert select_planner(env={"OPENAI_API_KEY": "sk"}).name == "offline"  # no model named


async def test_a_draft_says_which_planner_and_model_and_what_it_cost(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_LLM_PRICES", '{"local-model": {"input": 10000, "output": 0}}')
    fake_openai.reply_json(NEWS_PLAN)
    call = c.PlanCall(op="draft", workspace_id="default", body={"request": "collect the news"})
    reply = await draft_reply(_planner(fake_openai.url), call)
    assert reply.status == 200, reply.detail
    body = reply.body
    assert (body["planner"], body["model"], body["attempts"]) == ("openai", "local-model", 1)
    usage = body["usage"]
    assert usage["input_tokens"] > 0  # at a cent a token in, free out:
    assert usage["cost_usd"] == pytest.approx(usage["input_tokens"] / 100)


async def test_compare_shows_both_plans_and_their_differences(fake_openai: FakeOpenAI) -> None:
    logged = {"id": "log_it", "tool": "debug.log", "input": {"message": "done"}}
    fake_openai.reply_json({**NEWS_PLAN, "steps": [*NEWS_PLAN["steps"], logged]})
    body = {"request": "collect the news and summarise it"}
    call = c.PlanCall(op="compare", workspace_id="default", body=body)
    reply = await Comparison(OfflinePlanner(), _planner(fake_openai.url)).reply(call)
    assert reply.status == 200, reply.detail
    offline, llm = reply.body["offline"], reply.body["llm"]
    assert (offline["planner"], offline["model"]) == ("offline", None)
    assert (llm["planner"], llm["model"]) == ("openai", "local-model")
    assert [s["tool"] for s in offline["plan"]["steps"]] == ["mock.agent", "llm.generate"]
    diff = reply.body["differences"]  # offline → LLM: the same two steps, one more, a new prompt
    assert diff["added"] == [{"step": "log_it", "tool": "debug.log"}] and diff["removed"] == []
    changed = {c["step"]: {x["path"] for x in c["changes"]} for c in diff["changed"]}
    assert "input.prompt" in changed["summarise"]


async def test_compare_without_a_model_says_how_to_configure_one() -> None:
    call = c.PlanCall(op="compare", workspace_id="default", body={"request": "collect the news"})
    reply = await Comparison(OfflinePlanner(), None).reply(call)
    assert reply.status == 409 and "BATON_LLM_MODEL" in reply.detail


async def test_compare_shows_a_side_that_could_not_plan(fake_openai: FakeOpenAI) -> None:
    fake_openai.reply_json(*[UNKNOWN_TOOL_PLAN] * 3)
    call = c.PlanCall(op="compare", workspace_id="default", body={"request": "collect the news"})
    reply = await Comparison(OfflinePlanner(), _planner(fake_openai.url)).reply(call)
    assert reply.status == 200 and reply.body["differences"] is None
    assert "plan" in reply.body["offline"] and "gave no valid plan" in reply.body["llm"]["error"]


async def test_a_planned_execution_records_the_model_and_what_it_spent(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.reply_json(UNKNOWN_TOOL_PLAN, NEWS_PLAN)
    app = PlannerApp(MemoryEventStore("planner"), _planner(fake_openai.url))
    request = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request="the news")
    [proposed] = (await app.handle([Delivery(request)])).events
    assert isinstance(proposed, c.PlanProposed) and proposed.planner == "openai (local-model)"
    said = [sum(len(m["content"].split()) for m in b["messages"]) for b in fake_openai.bodies]
    assert proposed.usage == {
        "model": "local-model",
        "attempts": 2,
        "input_tokens": sum(said),
        "output_tokens": len(json.dumps(UNKNOWN_TOOL_PLAN).split())
        + len(json.dumps(NEWS_PLAN).split()),
        "estimated": False,
    }
