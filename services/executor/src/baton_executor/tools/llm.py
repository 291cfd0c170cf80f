"""``llm.generate``: ask the installation's model (an OpenAI-compatible server when
``BATON_LLM_MODEL`` is set, else Gemini with a key), or, with none, an offline extractive
fallback that says so.

The fallback keeps demos and tests working with no network: it never invents anything, it picks
the most informative sentences of the prompt and context, in their original order, and labels
its answer ``[offline model]`` with ``offline: True``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, ToolSpec
from baton_common.chatmodel import ChatModel, ModelError, ModelUnavailable, estimate_tokens
from baton_common.openaichat import model_from_env

from baton_executor.tools.base import ToolContext, ToolError, retry_after

OFFLINE_MODEL = "offline-extractive"
_MAX_POINTS = 6
_MAX_POINT_CHARS = 240
_MAX_TEXT_CHARS = 1600
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the their them then "
    "these this those to was were will with you your please".split()
)


def _spec() -> ToolSpec:
    spec = DEFAULT_CATALOGUE.get("llm.generate")
    assert spec is not None, "llm.generate is a built-in tool"
    return spec


class LlmGenerate:
    """The ``llm.generate`` tool."""

    spec: ToolSpec = _spec()

    def __init__(self, client: ChatModel | None = None, *, use_env: bool = True) -> None:
        # No client and no model in the environment means the offline fallback, by design.
        self.misconfigured: str | None = None  # a model named without a server: said per call
        self.client = client
        if client is None and use_env:
            try:
                self.client = model_from_env()
            except ValueError as exc:
                self.misconfigured = str(exc)

    async def run(
        self, input: dict[str, Any], ctx: ToolContext, model: str | None = None
    ) -> dict[str, Any]:
        """Answer the prompt with the model (``model``, else the configured one), or offline
        when no model is configured."""
        prompt = input.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ToolError("llm.generate needs a non-empty 'prompt'", retryable=False)
        context = input.get("context")
        if self.misconfigured is not None:
            raise ToolError(f"llm.generate: {self.misconfigured}", retryable=False)
        if self.client is None:
            text = offline_answer(prompt, context)
            return {
                "text": text,
                "model": OFFLINE_MODEL,
                "offline": True,
                "usage": estimated_usage(full_prompt(prompt, context), text),
            }
        client = self.client.for_model(model) if model else self.client
        return await self._ask(client, prompt, context, input)

    async def _ask(
        self, client: ChatModel, prompt: str, context: Any, input: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            done = await client.complete(
                full_prompt(prompt, context),
                system=input.get("system"),
                max_tokens=input.get("max_tokens"),
            )
        except ModelUnavailable as exc:
            raise ToolError(str(exc), retryable=True) from None
        except ModelError as exc:
            wait = _retry_after(exc) if exc.status == 429 else None
            raise ToolError(str(exc), retryable=exc.retryable, retry_after_s=wait) from None
        return {"text": done.text, "model": done.model, "offline": False, "usage": done.usage()}


def estimated_usage(prompt: str, text: str) -> dict[str, Any]:
    """Tokens in and out of the offline digest, estimated at four characters a token: what the
    business metrics add up per model, marked as an estimate."""
    return {
        "input_tokens": estimate_tokens(prompt),
        "output_tokens": estimate_tokens(text),
        "estimated": True,
    }


# Gemini says "Please retry in 27.4s." and, in its RetryInfo detail, "retryDelay": "27s".
_RETRY_DELAY = re.compile(r"(?:retry_?delay\W+|retry in\s+)(\d+(?:\.\d+)?)s", re.IGNORECASE)


def _retry_after(exc: ModelError) -> float | None:
    """How long the server asked us to wait: the HTTP ``Retry-After`` of the SDK's error (kept
    as the context of ours), else Gemini's ``retryDelay`` of its RetryInfo detail."""
    response = getattr(exc.__context__, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None and (wait := retry_after(headers.get("retry-after"))) is not None:
        return wait
    found = _RETRY_DELAY.search(str(exc))
    return retry_after(found.group(1)) if found else None


def full_prompt(prompt: str, context: Any) -> str:
    """The prompt with the context appended as JSON (text as is)."""
    if context is None:
        return prompt
    body = (
        context
        if isinstance(context, str)
        else json.dumps(context, indent=2, ensure_ascii=False, default=str)
    )
    return f"{prompt}\n\nContext:\n{body}"


def offline_answer(prompt: str, context: Any = None) -> str:
    """A deterministic extractive digest of the prompt and context, labelled as offline."""
    source = _lines(context) if context is not None else []
    points = _key_sentences(source or [prompt])
    task = _clip(" ".join(prompt.split()), 200)
    body = "\n".join(f"- {p}" for p in points) or "- (nothing to summarise)"
    text = (
        "[offline model] No language model is configured (set BATON_LLM_MODEL or "
        "GEMINI_API_KEY); this is an "
        f"extractive digest, not a generated answer.\nTask: {task}\nKey points:\n{body}"
    )
    return _clip(text, _MAX_TEXT_CHARS)


def _lines(value: Any, label: str = "") -> list[str]:
    """Flatten nested context into text lines, a dict's keys becoming labels."""
    if isinstance(value, dict) and not any(
        isinstance(v, dict | list | tuple) for v in value.values()
    ):
        # A flat record stays on one line, so its fields stay together in the digest.
        return [label + "; ".join(f"{k}: {v}" for k, v in value.items() if v is not None)]
    if isinstance(value, dict):
        return [line for key, item in value.items() for line in _lines(item, f"{key}: ")]
    if isinstance(value, list | tuple):
        return [line for item in value for line in _lines(item, label)]
    return [] if value is None else [f"{label}{value}"]


def _key_sentences(texts: list[str]) -> list[str]:
    """The highest-scoring sentences by word frequency, in their original order."""
    sentences: list[str] = []
    for text in texts:
        sentences += [s.strip() for s in _SENTENCE.split(text) if s.strip()]
    sentences = list(dict.fromkeys(sentences))  # drop repeats, keep order
    freq = Counter(w for s in sentences for w in _words(s))
    scored = [(-_score(s, freq), i) for i, s in enumerate(sentences)]
    chosen = sorted(i for _, i in sorted(scored)[:_MAX_POINTS])
    return [_clip(sentences[i], _MAX_POINT_CHARS) for i in chosen]


def _score(sentence: str, freq: Counter[str]) -> float:
    words = _words(sentence)
    return sum(freq[w] for w in sorted(set(words))) / (len(words) ** 0.5) if words else 0.0


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
