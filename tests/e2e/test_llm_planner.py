"""Any LLM, on the engine as processes: the planner and ``llm.generate`` pointed at an
OpenAI-compatible server (a local fake speaking ``/v1/chat/completions`` over real HTTP, with
scripted answers), a request planned by it (repaired once) and executed, ``baton plan`` saying
which model answered, ``baton plan --compare``, and the model's question to the person answered
over the API (the hitl gate flow of the offline planner's refusals)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from baton_common.fakemodels import FakeOpenAI, fake_openai_server
from baton_common.testing import wait_until

from tests.e2e.test_questions import gate

MODEL = "fake-llama"
DIGEST = {
    "name": "weather digest",
    "steps": [
        {"id": "gather", "tool": "mock.agent", "input": {"task": "gather the weather in Oslo"}},
        {
            "id": "digest",
            "tool": "llm.generate",
            "input": {"prompt": "Write a digest", "context": "${steps.gather.output.result}"},
            "depends_on": ["gather"],
        },
    ],
    "outputs": {"digest": "${steps.digest.output.text}"},
}
WRONG = {"steps": [{"id": "scrape", "tool": "web.scrape", "input": {"url": "https://x"}}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        yield server


@pytest.fixture(scope="module")
def llm_engine(module_engine: Any, fake: FakeOpenAI) -> Any:
    prices = json.dumps({MODEL: {"input": 1.0, "output": 2.0}})
    return module_engine(
        {
            "BATON_LLM_MODEL": MODEL,
            "OPENAI_BASE_URL": fake.url,
            "OPENAI_API_KEY": "sk-e2e",
            "BATON_LLM_PRICES": prices,
        }
    )


def test_a_request_is_planned_by_the_model_repaired_and_run_through_it(
    llm_engine: Any, fake: FakeOpenAI
) -> None:
    fake.reply_json(WRONG, DIGEST)  # the first plan is invalid: the validator's errors go back
    fake.reply_text("Oslo: mild, light rain in the evening.")
    resp = llm_engine.http.post(
        f"{llm_engine.url}/v1/executions", json={"request": "a weather digest for Oslo"}
    )
    assert resp.status_code in (200, 201, 202), resp.text
    view = llm_engine.wait(resp.json()["id"])
    assert view["status"] == "succeeded", view
    assert view["planner"] == f"openai ({MODEL})"
    digest = view["steps"]["digest"]["output"]
    assert digest["text"] == "Oslo: mild, light rain in the evening." and digest["model"] == MODEL
    assert digest["usage"]["estimated"] is False and digest["usage"]["input_tokens"] > 0
    bodies = [r["body"] for r in fake.requests]
    planned = [b for b in bodies if "response_format" in b]
    assert (
        len(planned) == 2 and "unknown tool 'web.scrape'" in planned[1]["messages"][-1]["content"]
    )
    assert all(r["authorization"] == "Bearer sk-e2e" for r in fake.requests)
    told = [b for b in bodies if "response_format" not in b]
    assert "gather the weather in Oslo" in told[0]["messages"][-1]["content"]  # the agent's result
    # planning's two calls and the step's one, their tokens (as the server counted) and cost
    url = f"{llm_engine.url}/v1/metrics/summary"
    used = wait_until(lambda: _model_use(llm_engine.http.get(url).json(), 3), timeout=30)
    counted = [
        len(" ".join(m["content"] for m in b["messages"]).split()) for b in bodies
    ]  # the fake counts words
    assert used["input_tokens"] == sum(counted)
    assert used["cost_usd"] == pytest.approx(
        (used["input_tokens"] * 1.0 + used["output_tokens"] * 2.0) / 1e6
    )


def test_the_model_asks_a_question_and_the_answer_plans_and_runs(
    llm_engine: Any, fake: FakeOpenAI
) -> None:
    words = f"prepare the {secrets.token_hex(3)} briefing"  # new words: nothing learned fits
    asked = {"question": "Which city is the briefing about?", "missing": ["the city"]}
    fake.reply_json({"question": {**asked, "choices": ["Oslo", "Bergen"]}})
    resp = llm_engine.http.post(f"{llm_engine.url}/v1/executions", json={"request": words})
    assert resp.status_code == 202, resp.text
    eid = resp.json()["id"]
    view = llm_engine.wait(eid, until=("waiting", "failed", "succeeded"))
    assert view["status"] == "waiting" and not view["steps"], view
    question = view["question"]
    assert question["question"] == "Which city is the briefing about? (for example: Oslo; Bergen)"
    assert question["not_understood"] == ["the city"] and question["status"] == "pending"
    gate(llm_engine, question["id"])  # the hitl service holds it: it can be answered
    fake.reply_json(DIGEST)
    url = f"{llm_engine.url}/v1/approvals/{question['id']}/decision"
    answered = llm_engine.http.post(url, json={"decision": "answer", "answer": "Oslo"})
    assert answered.status_code == 200, answered.text
    done = llm_engine.wait(eid)
    assert done["status"] == "succeeded" and done["planner"] == f"openai ({MODEL})", done
    assert sorted(done["steps"]) == ["digest", "gather"]  # the model's plan, run
    assert done["request"] == words and done["question"]["answer"] == "Oslo"
    planned = [r["body"] for r in fake.requests if "response_format" in r["body"]]
    assert f"Request: {words} Oslo" in planned[-1]["messages"][-1]["content"]  # the answer, told


def _model_use(summary: dict[str, Any], calls: int) -> dict[str, Any] | None:
    """The model's line of the business figures once it counts ``calls`` calls."""
    for row in summary["totals"]["llm"]:
        if row["model"] == MODEL and row["calls"] >= calls:
            return dict(row)
    return None


def test_baton_plan_says_which_model_answered(llm_engine: Any, fake: FakeOpenAI) -> None:
    fake.reply_json(WRONG, DIGEST)
    done = llm_engine.cli("plan", "a weather digest for Bergen")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert f"planner: openai, model: {MODEL}, 2 attempt(s) (1 repair(s))" in first, first
    assert "tokens" in first and "$" in first  # priced: BATON_LLM_PRICES names the model
    fake.reply_json(DIGEST)
    machine = json.loads(llm_engine.cli("plan", "a weather digest for Tromsø", "--json").stdout)
    assert (machine["planner"], machine["model"], machine["repairs"]) == ("openai", MODEL, 0)


def test_baton_plan_compare_shows_both_plans_and_their_differences(
    llm_engine: Any, fake: FakeOpenAI
) -> None:
    fake.reply_json(DIGEST)
    done = llm_engine.cli("plan", "--compare", "collect the news and summarise it")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("OFFLINE") and f"model: {MODEL}" in out.splitlines()[0]
    assert "collect_news → mock.agent" in out and "gather → mock.agent" in out
    assert "differences (offline → LLM):" in out and "+ gather (mock.agent)" in out
    fake.reply_json(DIGEST)
    resp = llm_engine.http.post(
        f"{llm_engine.url}/v1/plans/compare", json={"request": "collect the news and summarise"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["llm"]["order"] == ["gather", "digest"] and body["offline"]["planner"] == "offline"
    assert body["differences"]["summary"]["added"] >= 1
    spec = llm_engine.http.get(f"{llm_engine.url}/openapi.json").json()
    assert "post" in spec["paths"]["/v1/plans/compare"]


def test_compare_without_a_model_says_how_to_configure_one(engine: Any) -> None:
    done = engine.cli("plan", "--compare", "collect the news and summarise it")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "no LLM planner is configured" in done.stderr and "BATON_LLM_MODEL" in done.stderr
