"""``llm.generate`` through an OpenAI-compatible server: the real ``openai`` SDK against a local
fake of ``POST /v1/chat/completions`` (``baton_common.fakemodels``)."""

from __future__ import annotations

import pytest
from baton_common.fakemodels import FakeOpenAI
from baton_common.openaichat import OpenAIChat
from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.llm import LlmGenerate

CTX = ToolContext(execution_id="e1", step_id="answer", attempt=1, idempotency_key="e1:answer")


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("BATON_LLM_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


async def test_text_comes_from_the_configured_server(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, BATON_LLM_MODEL="llama3.2", OPENAI_BASE_URL=fake_openai.url)
    fake_openai.reply_text("Two outages, both fixed.")
    tool = LlmGenerate()
    assert isinstance(tool.client, OpenAIChat)
    out = await tool.run(
        {"prompt": "Summarise", "context": {"api": "two outages"}, "system": "Be brief."}, CTX
    )
    assert out["text"] == "Two outages, both fixed." and out["model"] == "llama3.2"
    assert out["offline"] is False
    # the server's counts (the fake counts words), recorded as they are, not estimated
    messages = fake_openai.requests[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    said = sum(len(m["content"].split()) for m in messages)
    assert out["usage"] == {"input_tokens": said, "output_tokens": 4, "estimated": False}
    assert "response_format" not in fake_openai.requests[0]["body"]


async def test_a_step_may_name_another_model(fake_openai: FakeOpenAI) -> None:
    tool = LlmGenerate(OpenAIChat("small", base_url=fake_openai.url))
    out = await tool.run({"prompt": "Say hi"}, CTX, model="large")
    assert out["model"] == "large" and fake_openai.requests[0]["body"]["model"] == "large"
    assert out["text"].startswith("fake model answer to: Say hi")


async def test_server_errors_are_clear_and_retried_only_when_they_may_pass(
    fake_openai: FakeOpenAI,
) -> None:
    tool = LlmGenerate(OpenAIChat("llama3.2", base_url=fake_openai.url))
    with pytest.raises(ToolError, match="does not know model 'llama3\\.2'") as caught:
        await LlmGenerate(OpenAIChat("llama3.2", base_url=fake_openai.url + "/nowhere")).run(
            {"prompt": "hi"}, CTX
        )
    assert not caught.value.retryable
    with pytest.raises(ToolError, match="cannot be reached") as down:
        await LlmGenerate(OpenAIChat("m", base_url="http://127.0.0.1:9/v1", timeout_s=2)).run(
            {"prompt": "hi"}, CTX
        )
    assert down.value.retryable
    assert (await tool.run({"prompt": "hi"}, CTX))["offline"] is False


async def test_a_model_named_without_a_server_fails_the_step_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, BATON_LLM_MODEL="llama3.2")
    tool = LlmGenerate()
    with pytest.raises(ToolError, match="neither OPENAI_BASE_URL") as caught:
        await tool.run({"prompt": "hi"}, CTX)
    assert not caught.value.retryable
