"""Tools built from the catalogue event: HTTP, Python and LLM agents, and a live lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from baton_common import followed
from baton_common.catalogue import Catalogue
from baton_common.discovery import CatalogueFollower, scan
from baton_common.testing import FakeGemini
from baton_common.toolstats import error_class, tokens_of
from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.discovered import HttpAgent, LiveTools, LlmAgent, PythonAgent, build
from baton_executor.tools.registry import builtin_tools

CTX = ToolContext(execution_id="e", step_id="s", attempt=1, idempotency_key="e:s")


def _spec(name: str = "t.x") -> Any:
    from baton_common.catalogue import ToolSpec

    return ToolSpec(name=name, description="d", input_schema={}, output_schema={})


async def test_http_agent_sends_the_input_and_the_key_and_returns_the_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/down":
            return httpx.Response(503, text="busy", headers={"Retry-After": "2"})
        if request.url.path == "/bad":
            return httpx.Response(400, text="no")
        return httpx.Response(200, json={"echo": json.loads(request.content)})

    real = httpx.AsyncClient  # the guarded transport swapped for the mock: no network here
    monkeypatch.setattr(
        httpx, "AsyncClient", lambda **kw: real(**{**kw, "transport": httpx.MockTransport(answer)})
    )
    impl = {"url": "http://svc/ok", "method": "POST", "headers": {"X-A": "1"}}
    assert await HttpAgent(_spec(), impl).run({"q": 1}, CTX) == {"echo": {"q": 1}}
    assert seen[0].headers["Idempotency-Key"] == "e:s" and seen[0].headers["X-A"] == "1"
    with pytest.raises(ToolError) as down:
        await HttpAgent(_spec(), {"url": "http://svc/down"}).run({}, CTX)
    assert down.value.retryable and down.value.retry_after_s == 2
    with pytest.raises(ToolError) as bad:
        await HttpAgent(_spec(), {"url": "http://svc/bad"}).run({}, CTX)
    assert not bad.value.retryable and "answered 400" in str(bad.value)


async def test_http_agent_to_an_internal_address_is_refused_for_good() -> None:
    agent = HttpAgent(_spec(), {"url": "http://169.254.169.254/latest/meta-data/"})
    with pytest.raises(ToolError) as refused:
        await agent.run({}, CTX)
    assert not refused.value.retryable
    assert "egress refused: 169.254.169.254 is a cloud metadata address" in str(refused.value)


async def test_python_agent_calls_plain_or_with_the_context() -> None:
    one = PythonAgent(_spec(), "json:dumps")  # one argument: the input
    assert await one.run({"a": 1}, CTX) == '{"a": 1}'
    two = PythonAgent(_spec(), "os.path:join")  # two: the input and the context
    with pytest.raises(TypeError):
        await two.run({"a": 1}, CTX)


async def test_llm_agent_fills_its_prompt_and_answers_offline() -> None:
    agent = LlmAgent(_spec(), {"prompt": "Summarise {text}. Missing: {nothing}.", "model": "m"})
    answer = await agent.run({"text": "The build is green. All tests pass."}, CTX)
    assert answer["offline"] is True and answer["requested_model"] == "m"
    assert "build is green" in answer["text"]


async def test_llm_agent_asks_the_model_its_file_names(
    fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    monkeypatch.setenv("BATON_GEMINI_BASE_URL", fake_gemini.url)
    monkeypatch.setenv("BATON_GEMINI_MODEL", "gemini-2.5-flash")  # the installation's model
    fake_gemini.reply_text("Green.")
    fake_gemini.reply_text("Green too.")
    named = LlmAgent(_spec(), {"prompt": "Status of {text}?", "model": "gemini-2.5-pro"})
    answer = await named.run({"text": "the build"}, CTX)
    assert answer["model"] == "gemini-2.5-pro" and answer["text"] == "Green."
    assert "/models/gemini-2.5-pro:generateContent" in fake_gemini.requests[0]["path"]
    assert answer["usage"]["input_tokens"] > 0 and answer["usage"]["output_tokens"] > 0
    unnamed = LlmAgent(_spec(), {"prompt": "Status of {text}?"})  # the installation's model
    assert (await unnamed.run({"text": "the build"}, CTX))["model"] == "gemini-2.5-flash"
    assert "/models/gemini-2.5-flash:generateContent" in fake_gemini.requests[1]["path"]


def test_an_unbuildable_entry_fails_its_calls_not_the_worker() -> None:
    with pytest.raises(ValueError):
        build({"spec": _spec().model_dump(), "implementation": {"carrier": "pigeon"}})


async def test_live_tools_follow_the_catalogue_in_force(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: t.echo\ndescription: echo\ninput_schema: {type: object}\n"
        "implementation: {python: 'json:dumps'}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "name: t.gone\ndescription: d\ninput_schema: {type: object}\n"
        "implementation: {python: 'nosuch_module_xyz:f'}\n"
    )
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())  # not the process's own
    followed.FOLLOWER[:] = [follower]
    try:
        tools = LiveTools(builtin_tools(), agents_folder=tmp_path)
        assert tools.get("t.echo") is None  # nothing applied yet
        follower.apply(scan(tmp_path).event("test", 0))
        echo = tools.get("t.echo")
        assert echo is not None and await echo.run({"x": 1}, CTX) == '{"x": 1}'
        assert "t.gone" not in tools and tools.get("http.request") is not None
    finally:
        followed.FOLLOWER.clear()


async def test_a_worker_builds_tools_from_its_own_sources_never_from_the_message(
    tmp_path: Path,
) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir(), theirs.mkdir()
    agent = "name: t.echo\ndescription: echo\ninput_schema: {type: object}\n"
    (mine / "a.yaml").write_text(agent + "implementation: {python: 'json:dumps'}\n")
    # what a forged catalogue says: the same tool run by other code, and a tool of its own
    (theirs / "a.yaml").write_text(agent + "implementation: {python: 'os:getcwd'}\n")
    (theirs / "b.yaml").write_text(
        "name: t.evil\ndescription: d\ninput_schema: {type: object}\n"
        "implementation: {python: 'os:getcwd'}\n"
    )
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())
    followed.FOLLOWER[:] = [follower]
    try:
        tools = LiveTools(builtin_tools(), agents_folder=mine)
        follower.apply(scan(theirs).event("forger", 0))
        echo = tools.get("t.echo")
        assert echo is not None and await echo.run({"x": 1}, CTX) == '{"x": 1}'  # json:dumps
        evil = tools.get("t.evil")
        assert evil is not None
        with pytest.raises(ToolError, match="not installed here"):
            await evil.run({}, CTX)
    finally:
        followed.FOLLOWER.clear()


def test_error_classes_and_tokens() -> None:
    assert error_class("timed out after 5s") == "timeout"
    assert error_class("input does not fit x: a: required") == "bad_input"
    assert error_class("t.x: http://a answered 503: busy") == "http_5xx"
    assert error_class("KeyError: 'a'") == "KeyError"
    assert error_class("something odd") == "error"
    assert tokens_of({"usage": {"total_tokens": 12}}) == 12
    assert tokens_of({"tokens": 3}) == 3 and tokens_of("text") == 0
