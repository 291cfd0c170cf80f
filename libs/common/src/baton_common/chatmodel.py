"""What Baton asks of a language model, whoever serves it: one completion with its token counts,
and the errors every client maps its own failures to.

Gemini (``gemini.py``) and any OpenAI-compatible server (``openaichat.py``: Ollama, vLLM,
llama.cpp's server, LM Studio, a hosted API) both answer ``complete``; the planner's repair loop
and ``llm.generate`` are written once against this protocol.
"""

from __future__ import annotations

import abc
import copy
import json
from dataclasses import dataclass
from typing import Any, Self

CHARS_PER_TOKEN = 4  # the estimate when a server reports no usage


class ModelUnavailable(RuntimeError):
    """The model cannot be reached (no network, DNS, connection refused, timeout)."""


class ModelError(RuntimeError):
    """The model's server answered with an error; ``status`` is the HTTP status when there is one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Rate limits and server errors may pass; a bad key or bad request will not."""
        return self.status is None or self.status == 429 or self.status >= 500


def endpoint_refused(who: str, where: str, exc: Exception) -> ModelError:
    """The egress guard refused the model's endpoint: an operator's setting to change (an
    internal address is reached only when ``BATON_EGRESS_ALLOW`` names it), never retried."""
    return ModelError(f"{who}'s endpoint {where} is not reached: {exc}", status=403)


def refusal(
    code: int | None, message: str, key_setting: str, not_found: str, bad_key: bool = False
) -> str:
    """What a model API's HTTP error means for the operator, after the server's name: a key to
    check (401, 403, or ``bad_key``), ``not_found`` (404), a limit (429), the server's fault
    (5xx), or a refusal."""
    if bad_key or code in (401, 403):
        return f"rejected the API key (HTTP {code}): {message}. Check {key_setting}."
    if code == 404:
        return not_found
    if code == 429:
        return f"rate limit or quota exceeded (HTTP 429): {message}"
    if code is not None and code >= 500:
        return f"had a server error (HTTP {code}): {message}"
    return f"refused the request (HTTP {code}): {message}"


class ModelInvalidJson(ModelError):
    """The reply to a JSON request was not JSON; ``text`` is what the model said."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


@dataclass(frozen=True)
class Completion:
    """One answer: its text, the model that gave it, tokens in and out (``estimated`` when the
    server did not count them)."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    estimated: bool = False

    def usage(self) -> dict[str, Any]:
        """Tokens as a tool's output carries them (the projector adds them up per model)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
        }

    def json(self) -> Any:
        """The text as JSON (a Markdown code fence around it is tolerated)."""
        try:
            return json.loads(strip_fence(self.text))
        except ValueError:
            raise ModelInvalidJson(
                f"{self.model} replied with text that is not JSON: {self.text[:200]!r}", self.text
            ) from None


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` at four characters a token, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


def completion(
    text: str, model: str, prompt: str, counted: tuple[int | None, int | None] = (None, None)
) -> Completion:
    """A completion with the server's token counts, estimated from the text where it gave none."""
    tokens_in, tokens_out = counted
    if tokens_in is None or tokens_out is None:
        return Completion(text, model, estimate_tokens(prompt), estimate_tokens(text), True)
    return Completion(text, model, tokens_in, tokens_out)


@dataclass(frozen=True)
class Ask:
    """One question to a model: the prompt, a system instruction, a cap on the answer's tokens,
    and the JSON Schema the answer must follow (None: text)."""

    prompt: str
    system: str | None = None
    max_tokens: int | None = None
    schema: dict[str, Any] | None = None


class ChatModel(abc.ABC):
    """A model client: ``provider`` names the kind (``gemini``, ``openai``), ``model`` the model."""

    provider: str
    label: str  # how messages name it: "Gemini", "the OpenAI-compatible model"
    model: str

    def for_model(self, model: str) -> Self:
        """The same client (key, server, connections) asking another model."""
        if model == self.model:
            return self
        other = copy.copy(self)
        other.model = model
        return other

    async def complete(
        self,
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Completion:
        """The model's answer to ``prompt``; JSON following ``schema`` when one is given."""
        return await self.answer(Ask(prompt, system, max_tokens, schema))

    @abc.abstractmethod
    async def answer(self, ask: Ask) -> Completion:
        """What this client's server answers to ``ask``."""


def strip_fence(text: str) -> str:
    """Models sometimes wrap JSON in a Markdown code fence despite being asked for JSON."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    return body.strip()
