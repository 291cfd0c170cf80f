"""Any OpenAI-compatible chat-completions server as a ``ChatModel``, through the ``openai`` package.

Ollama, vLLM, llama.cpp's server, LM Studio and hosted APIs all speak ``POST /v1/chat/completions``.
Configured by ``BATON_LLM_MODEL`` (which model) with ``OPENAI_BASE_URL`` (where; api.openai.com
when unset) and ``OPENAI_API_KEY`` (local servers need none). JSON is asked for with the caller's
JSON Schema (``response_format`` ``json_schema``); a server that refuses that form gets
``json_object`` from then on, and the planner's validation does the rest.

The endpoint is an installation setting, and it passes the egress guard like every outbound
call (the SDK's HTTP client connects through it, as Gemini's does): an endpoint on an internal
address (a local Ollama at 127.0.0.1, a vLLM on the cluster's network) is reached only when the
operator names it in ``BATON_LLM_EGRESS_ALLOW`` (for the model clients alone) or
``BATON_EGRESS_ALLOW`` (for every outbound call).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from baton_common.chatmodel import (
    Ask,
    ChatModel,
    Completion,
    ModelError,
    ModelUnavailable,
    completion,
    endpoint_refused,
    refusal,
)
from baton_common.egress import EgressGuard, EgressRefused, guarded_httpx2, model_guard
from baton_common.gemini import gemini_from_env

if TYPE_CHECKING:
    import openai

MODEL_SETTING = "BATON_LLM_MODEL"
NO_KEY = "not-needed"  # local servers take any key; the SDK insists on one
# Words in a 400's message that mean "this server does not do json_schema" (Ollama, older vLLM,
# llama.cpp's server before grammars from schemas, proxies): ask for json_object instead.
_SCHEMA_REFUSED = ("response_format", "json_schema", "schema", "not supported", "unsupported")


class OpenAIChat(ChatModel):
    """Generate text or JSON with one model of an OpenAI-compatible server (a ``ChatModel``)."""

    provider = "openai"
    label = "the OpenAI-compatible model"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60,
        guard: EgressGuard | None = None,
    ) -> None:
        if not model:
            raise ValueError(f"a model name is required (set {MODEL_SETTING})")
        self.model = model
        self.base_url = base_url
        self.schemas = True  # False once the server refused response_format json_schema
        import openai  # loaded only where a model is configured: its import takes a second

        # One attempt: steps and planners own retries (the SDK's would sleep between them).
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=guarded_httpx2(guard or model_guard()),
        )

    async def answer(self, ask: Ask) -> Completion:
        """The server's answer; JSON as ``json_schema``, or ``json_object`` where refused."""
        messages = [{"role": "system", "content": ask.system}] if ask.system else []
        messages.append({"role": "user", "content": ask.prompt})
        options: dict[str, Any] = {"max_tokens": ask.max_tokens} if ask.max_tokens else {}
        if ask.schema is not None and self.schemas:
            try:
                return await self._ask(messages, options, _json_schema(ask.schema))
            except ModelError as exc:
                if not _schema_refused(exc):
                    raise
                self.schemas = False  # this server: json_object from now on
        if ask.schema is not None:
            return await self._ask(messages, options, {"type": "json_object"})
        return await self._ask(messages, options, None)

    async def aclose(self) -> None:
        """Close the SDK's HTTP connections."""
        await self._client.close()

    async def _ask(
        self, messages: list[dict[str, str]], options: dict[str, Any], form: dict[str, Any] | None
    ) -> Completion:
        import openai

        if form is not None:
            options = {**options, "response_format": form}
        try:
            reply = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                **options,
            )
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except EgressRefused as exc:
            raise endpoint_refused("The model server", self._where(), exc) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelUnavailable(
                f"the model server cannot be reached (model {self.model}, {self._where()}): {exc}"
            ) from None
        except openai.OpenAIError as exc:
            raise ModelError(
                f"the model server's answer did not read ({self.model}): {exc}"
            ) from None
        return self._completion(reply, messages)

    def _completion(self, reply: Any, messages: list[dict[str, str]]) -> Completion:
        text = reply.choices[0].message.content if reply.choices else None
        if not text:
            reason = reply.choices[0].finish_reason if reply.choices else "no choices"
            raise ModelError(f"{self.model} returned no text (finish reason: {reason})")
        usage = reply.usage
        counted = (
            (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (None, None)
        )
        prompt = "".join(m["content"] for m in messages)
        return completion(text, reply.model or self.model, prompt, counted)

    def _status_error(self, exc: openai.APIStatusError) -> ModelError:
        """A message that says what the HTTP status means for the operator."""
        code, message = exc.status_code, _message_of(exc)
        not_found = (
            f"does not know model {self.model!r} or has no /chat/completions (HTTP 404): "
            f"{message}. Check {MODEL_SETTING} and OPENAI_BASE_URL (it usually ends in /v1)."
        )
        text = refusal(code, message, "OPENAI_API_KEY", not_found)
        return ModelError(
            f"The model server at {self._where()} {text} [model {self.model}]", status=code
        )

    def _where(self) -> str:
        return self.base_url or "api.openai.com"


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def _schema_refused(exc: ModelError) -> bool:
    """A 400 (or 422) about the response format: the server does not take JSON Schemas."""
    said = str(exc).lower()
    return exc.status in (400, 422) and any(w in said for w in _SCHEMA_REFUSED)


def _message_of(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(exc.message or "no details")


def openai_from_env(env: Mapping[str, str] | None = None) -> OpenAIChat | None:
    """A client when BATON_LLM_MODEL is set (with OPENAI_BASE_URL and/or OPENAI_API_KEY);
    None when it is not. ``ValueError`` when a model is named but no server or key is."""
    env = os.environ if env is None else env
    model = (env.get(MODEL_SETTING) or "").strip()
    if not model:
        return None
    base_url = (env.get("OPENAI_BASE_URL") or "").strip() or None
    key = (env.get("OPENAI_API_KEY") or "").strip() or None
    if base_url is None and key is None:
        raise ValueError(
            f"{MODEL_SETTING} is set but neither OPENAI_BASE_URL (a local server such as "
            "http://127.0.0.1:11434/v1) nor OPENAI_API_KEY (a hosted API) is"
        )
    return OpenAIChat(model, base_url=base_url, api_key=key)


def model_from_env(env: Mapping[str, str] | None = None) -> ChatModel | None:
    """The installation's model: an OpenAI-compatible one when BATON_LLM_MODEL is set, else
    Gemini when its key is, else none (the offline planner and ``llm.generate``'s digest)."""
    env = os.environ if env is None else env
    return openai_from_env(env) or gemini_from_env(dict(env))
