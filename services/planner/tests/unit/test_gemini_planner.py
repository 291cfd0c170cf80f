"""The Gemini planner against a real local HTTP server impersonating the Gemini REST API.

The real google-genai SDK is used, pointed at the fake with ``base_url``; only the network end
is fake. The SDK calls ``POST /{api_version}/models/{model}:generateContent`` (v1 by default in
google-genai 3.x, v1beta in older releases), so the fake accepts both.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from baton_common.fakemodels import NEWS_PLAN, UNKNOWN_TOOL_PLAN
from baton_common.gemini import GeminiClient
from baton_common.plans import validate_plan
from baton_common.testing import FakeGemini
from baton_planner.modelplanner import ModelPlanner
from baton_planner.offline import PlanMemory
from baton_planner.planners import FallbackPlanner, PlanningError
from baton_planner.selection import select_planner

# The fake model servers listen on 127.0.0.1, which an operator allows (BATON_EGRESS_ALLOW).
pytestmark = pytest.mark.usefixtures("loopback_allowed")

_PATH = re.compile(r"^/v1(?:beta)?/models/(?P<model>[^/:]+):generateContent$")


@pytest.fixture
def fake(fake_gemini: FakeGemini) -> FakeGemini:
    return fake_gemini


def _planner(url: str, **kw: Any) -> ModelPlanner:
    return ModelPlanner(GeminiClient(api_key="test-key", base_url=url, timeout_s=5), **kw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_valid_plan_is_returned_as_is(fake: FakeGemini) -> None:
    fake.reply_plan(NEWS_PLAN)
    plan = await _planner(fake.url).plan("collect the news and summarise it", {})
    assert plan == NEWS_PLAN
    request = fake.requests[0]
    assert _PATH.match(request["path"])["model"] == "gemini-2.5-flash"
    assert request["key"] == "test-key"
    config = request["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert (
        "mock.agent"
        in config["responseJsonSchema"]["properties"]["steps"]["items"]["properties"]["tool"][
            "enum"
        ]
    )
    prompt = fake.prompt_of(0)
    assert (
        "collect the news and summarise it" in prompt
        and "llm.generate" in prompt
        and "${steps." in prompt
    )


async def test_an_invalid_plan_is_repaired_with_the_validation_errors(fake: FakeGemini) -> None:
    fake.reply_plan(UNKNOWN_TOOL_PLAN)
    fake.reply_plan(NEWS_PLAN)
    plan = await _planner(fake.url).plan("collect the news and summarise it", {})
    validate_plan(plan)
    assert len(fake.requests) == 2
    second = fake.prompt_of(1)
    assert "unknown tool 'web.scrape'" in second
    assert "Validation errors" in second and "web.scrape" in second


async def test_non_json_answers_are_repaired_too(fake: FakeGemini) -> None:
    fake.reply_plan("sorry, here is a plan: step 1 ...")
    fake.reply_plan(NEWS_PLAN)
    assert await _planner(fake.url).plan("collect the news", {}) == NEWS_PLAN
    assert "not JSON" in fake.prompt_of(1)


async def test_repairs_are_bounded_and_the_problems_listed(fake: FakeGemini) -> None:
    for _ in range(3):
        fake.reply_plan(UNKNOWN_TOOL_PLAN)
    with pytest.raises(PlanningError) as caught:
        await _planner(fake.url, max_repairs=1).plan("scrape x", {})
    assert len(fake.requests) == 2
    assert "unknown tool 'web.scrape'" in str(caught.value)
    assert caught.value.problems and not caught.value.transient


async def test_an_unreachable_gemini_is_a_clear_planning_error() -> None:
    with pytest.raises(PlanningError, match="Gemini cannot be reached") as caught:
        await _planner(f"http://127.0.0.1:{_closed_port()}").plan("collect the news", {})
    assert "gemini-2.5-flash" in str(caught.value)
    assert caught.value.transient


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_is_a_clear_planning_error(fake: FakeGemini, status: int) -> None:
    fake.reply_error(status, "API key not valid. Please pass a valid API key.", "PERMISSION_DENIED")
    with pytest.raises(PlanningError, match=f"rejected the API key \\(HTTP {status}\\)") as caught:
        await _planner(fake.url).plan("collect the news", {})
    assert "GEMINI_API_KEY" in str(caught.value)
    assert not caught.value.transient


async def test_a_remembered_plan_is_used_without_asking(fake: FakeGemini) -> None:
    memory = PlanMemory()
    memory.remember("Collect the news.", NEWS_PLAN)
    assert await _planner(fake.url, memory=memory).plan("collect the news", {}) == NEWS_PLAN
    assert fake.requests == []


async def test_select_planner_picks_by_environment(fake: FakeGemini) -> None:
    assert select_planner(env={}).name == "offline"
    env = {
        "GEMINI_API_KEY": "k",
        "BATON_GEMINI_BASE_URL": fake.url,
        "BATON_GEMINI_MODEL": "gemini-x",
    }
    gemini = select_planner(env=env)
    assert isinstance(gemini, ModelPlanner) and gemini.client.model == "gemini-x"
    fallback = select_planner(env={**env, "BATON_PLANNER_FALLBACK": "offline"})
    assert isinstance(fallback, FallbackPlanner)
    fallback.remember("collect the news", NEWS_PLAN)  # as the service does on success
    assert await fallback.plan("Collect the news", {}) == NEWS_PLAN
    assert fake.requests == []


async def test_the_offline_fallback_only_when_unreachable(fake: FakeGemini) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    planner = select_planner(
        env={
            "GEMINI_API_KEY": "k",
            "BATON_GEMINI_BASE_URL": down,
            "BATON_PLANNER_FALLBACK": "offline",
        }
    )
    plan = await planner.plan("collect the news and summarise it", {})
    assert [s["tool"] for s in plan["steps"]] == ["mock.agent", "llm.generate"]
    fake.reply_error(401, "bad key", "UNAUTHENTICATED")
    refused = select_planner(
        env={
            "GEMINI_API_KEY": "k",
            "BATON_GEMINI_BASE_URL": fake.url,
            "BATON_PLANNER_FALLBACK": "offline",
        }
    )
    with pytest.raises(PlanningError, match="HTTP 401"):
        await refused.plan("collect the news", {})


async def test_an_endpoint_on_an_internal_address_is_refused_by_the_egress_guard(
    fake: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PlanningError) as caught:  # the cloud's metadata service, never reached
        await _planner("http://169.254.169.254/").plan("collect the news", {})
    said = str(caught.value)
    assert "169.254.169.254 is a cloud metadata address" in said and not caught.value.transient
    monkeypatch.delenv("BATON_EGRESS_ALLOW")  # loopback, as any internal address, once not allowed
    with pytest.raises(PlanningError, match=r"127\.0\.0\.1 is a loopback address") as caught:
        await _planner(fake.url).plan("collect the news", {})
    assert "BATON_EGRESS_ALLOW" in str(caught.value) and not fake.requests
