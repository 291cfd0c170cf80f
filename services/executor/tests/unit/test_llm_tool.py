"""``llm.generate``: the offline fallback, and Gemini through the real SDK against a local fake."""

from __future__ import annotations

import json
import socket

import pytest
from baton_common.gemini import GeminiClient
from baton_common.testing import FakeGemini
from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.llm import OFFLINE_MODEL, LlmGenerate, offline_answer

# The fake model servers listen on 127.0.0.1, which an operator allows (BATON_EGRESS_ALLOW).
pytestmark = pytest.mark.usefixtures("loopback_allowed")

CTX = ToolContext(execution_id="e1", step_id="summarise", attempt=1, idempotency_key="e1:summarise")
# google-genai 3.x calls /v1/…, older releases /v1beta/…
REPORTS = [
    {"service": "api", "incidents": "Two outages on Monday. Latency spiked after the deploy."},
    {
        "service": "billing",
        "incidents": "Invoices were delayed by a queue backlog. No data was lost.",
    },
]


@pytest.fixture
def fake(fake_gemini: FakeGemini) -> FakeGemini:
    return fake_gemini


def _tool(url: str) -> LlmGenerate:
    return LlmGenerate(GeminiClient(api_key="test-key", base_url=url, timeout_s=5))


async def test_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("BATON_LLM_MODEL", raising=False)
    tool = LlmGenerate()
    assert tool.client is None and tool.spec.name == "llm.generate"
    out = await tool.run({"prompt": "Summarise the incidents", "context": REPORTS}, CTX)
    assert out["offline"] is True and out["model"] == OFFLINE_MODEL == "offline-extractive"
    assert out["text"].startswith("[offline model]")
    assert "Two outages on Monday." in out["text"] and "Summarise the incidents" in out["text"]
    assert out == await LlmGenerate(use_env=False).run(
        {"prompt": "Summarise the incidents", "context": REPORTS}, CTX
    )


def test_offline_answer_is_deterministic_and_bounded() -> None:
    long_context = [
        f"Sentence number {i} mentions outage {i % 7} in region {i % 3}." for i in range(500)
    ]
    first = offline_answer("Summarise", long_context)
    assert first == offline_answer("Summarise", long_context)
    assert len(first) <= 1600 and first.count("\n- ") <= 6
    assert "offline" in offline_answer(
        "Explain recursion in one sentence. It is a function calling itself."
    )


async def test_an_empty_prompt_is_not_retried() -> None:
    with pytest.raises(ToolError) as caught:
        await LlmGenerate(use_env=False).run({"prompt": "  "}, CTX)
    assert caught.value.retryable is False


async def test_gemini_gets_prompt_context_and_system(fake: FakeGemini) -> None:
    fake.reply_text("Two services had incidents.")
    tool_input = {
        "prompt": "Summarise",
        "context": REPORTS,
        "system": "Be brief.",
        "max_tokens": 64,
    }
    out = await _tool(fake.url).run(tool_input, CTX)
    assert out == {
        "text": "Two services had incidents.",
        "model": "gemini-2.5-flash",
        "offline": False,
        "usage": {
            "input_tokens": out["usage"]["input_tokens"],
            "output_tokens": 7,
            "estimated": True,
        },
    }
    assert out["usage"]["input_tokens"] > 10
    body = fake.bodies[0]
    sent = body["contents"][0]["parts"][0]["text"]
    assert (
        sent.startswith("Summarise\n\nContext:\n")
        and json.loads(sent.split("Context:\n", 1)[1]) == REPORTS
    )
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert body["generationConfig"]["maxOutputTokens"] == 64


async def test_unreachable_gemini_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ToolError, match="Gemini cannot be reached") as caught:
        await _tool(f"http://127.0.0.1:{port}").run({"prompt": "hi"}, CTX)
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("status", "retryable", "says"),
    [
        (401, False, "rejected the API key"),
        (400, False, "refused"),
        (429, True, "rate limit"),
        (503, True, "server error"),
    ],
)
async def test_gemini_errors_map_to_tool_errors(
    fake: FakeGemini, status: int, retryable: bool, says: str
) -> None:
    fake.reply_error(status, "nope")
    with pytest.raises(ToolError, match=says) as caught:
        await _tool(fake.url).run({"prompt": "hi"}, CTX)
    assert caught.value.retryable is retryable and f"HTTP {status}" in str(caught.value)
