"""A thin async wrapper over google-genai (``from google import genai``) with clear errors.

``google-generativeai`` is deprecated; this uses its successor ``google-genai``. Every failure is
mapped to ``GeminiUnavailable`` (Gemini cannot be reached: connection refused, DNS, timeout) or
``GeminiError`` (Gemini answered with an error, e.g. HTTP 401 for a bad key), so callers never
see SDK or transport exception types. ``base_url`` points the real SDK at another server, which
is how the tests run it against a local fake of the REST API.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK (~15 MB) is imported by the first client, not by every process
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as genai_types

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

DEFAULT_MODEL = "gemini-2.5-flash"


class GeminiUnavailable(ModelUnavailable):
    """Gemini cannot be reached (no network, DNS, connection refused, timeout)."""


class GeminiError(ModelError):
    """Gemini answered with an error; ``status`` is the HTTP status when there is one."""


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Transport exception types of whichever HTTP stacks the SDK may use (looked up on the
    first failure: importing them all at start would cost every process their memory)."""
    found: list[type[BaseException]] = [OSError, TimeoutError, asyncio.TimeoutError]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("aiohttp", "ClientError"),
        ("google.auth.exceptions", "TransportError"),
    ):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def client_for(
    api_key: str, base_url: str | None, timeout_s: float, guard: EgressGuard | None = None
) -> genai.Client:
    """A google-genai client with our HTTP options (``base_url`` for a local fake in tests),
    whose async calls connect through the egress guard (the installation's when none is given)."""
    from google import genai
    from google.genai import types as genai_types

    options = genai_types.HttpOptions(
        base_url=base_url,
        timeout=int(timeout_s * 1000),
        # One attempt: steps and planners own retries, and the SDK's implicit retries sleep
        # for seconds on connection errors.
        retry_options=genai_types.HttpRetryOptions(attempts=1),
        httpx_async_client=guarded_httpx2(guard or model_guard()),
    )
    return genai.Client(api_key=api_key, http_options=options)


class GeminiClient(ChatModel):
    """Generate text or JSON with one Gemini model (a ``ChatModel``)."""

    provider = "gemini"
    label = "Gemini"

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout_s: float = 60,
        guard: EgressGuard | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Gemini API key is required (set GEMINI_API_KEY)")
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._client = client_for(api_key, base_url, timeout_s, guard)

    async def answer(self, ask: Ask) -> Completion:
        """Gemini's answer, with its own token counts when it gives them."""
        from google.genai import types as genai_types

        config = genai_types.GenerateContentConfig(
            system_instruction=ask.system,
            max_output_tokens=ask.max_tokens,
            response_mime_type="application/json" if ask.schema is not None else None,
            response_json_schema=ask.schema,
        )
        response = await self._generate(ask.prompt, config)
        meta = getattr(response, "usage_metadata", None)
        counted = (
            getattr(meta, "prompt_token_count", None),
            getattr(meta, "candidates_token_count", None),
        )
        said = f"{ask.system or ''}{ask.prompt}"
        return completion(response.text or "", self.model, said, counted)

    async def aclose(self) -> None:
        """Close the SDK's HTTP connections."""
        await self._client.aio.aclose()

    async def _generate(
        self, prompt: str, config: genai_types.GenerateContentConfig
    ) -> genai_types.GenerateContentResponse:
        from google.genai import errors as genai_errors

        try:
            # The SDK has its own timeout; this guard also covers a stalled connect or DNS.
            response = await asyncio.wait_for(
                self._client.aio.models.generate_content(
                    model=self.model, contents=prompt, config=config
                ),
                timeout=self.timeout_s + 5,
            )
        except genai_errors.APIError as exc:
            raise _api_error(exc, self.model) from None
        except EgressRefused as exc:
            raise endpoint_refused("Gemini", self.base_url or "the Gemini API", exc) from None
        except _transport_errors() as exc:
            raise self._unavailable(exc) from None
        except Exception as exc:
            raise GeminiError(
                f"Gemini ({self.model}) call failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not response.text:
            reason = _finish_reason(response)
            raise GeminiError(f"Gemini ({self.model}) returned no text (finish reason: {reason})")
        return response

    def _unavailable(self, exc: BaseException) -> GeminiUnavailable:
        where = self.base_url or "the Gemini API"
        detail = str(exc) or type(exc).__name__
        return GeminiUnavailable(
            f"Gemini cannot be reached (model {self.model}, {where}): {type(exc).__name__}: {detail}"
        )


def _api_error(exc: genai_errors.APIError, model: str) -> GeminiError:
    """A message that says what the HTTP status means for the caller."""
    code = exc.code if isinstance(exc.code, int) else None
    message = exc.message or exc.status or "no details"
    not_found = f"model {model!r} was not found (HTTP 404): {message}"
    # Google answers 400 (not 401) for a malformed key, so the text is checked too.
    bad_key = code == 400 and "api key" in str(message).lower()
    text = refusal(code, message, "GEMINI_API_KEY", not_found, bad_key)
    return GeminiError(f"Gemini {text} [model {model}]", status=code)


def _finish_reason(response: Any) -> str:
    candidates = getattr(response, "candidates", None) or []
    reason = getattr(candidates[0], "finish_reason", None) if candidates else None
    return str(reason) if reason else "no candidates"


def gemini_from_env(env: dict[str, str] | None = None) -> GeminiClient | None:
    """A client from GEMINI_API_KEY (or GOOGLE_API_KEY), BATON_GEMINI_MODEL, BATON_GEMINI_BASE_URL."""
    env = dict(os.environ) if env is None else env
    key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
    if not key:
        return None
    return GeminiClient(
        api_key=key,
        model=env.get("BATON_GEMINI_MODEL") or DEFAULT_MODEL,
        base_url=env.get("BATON_GEMINI_BASE_URL") or None,
    )
