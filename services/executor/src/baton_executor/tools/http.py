"""``http.request``: an HTTP call that always carries the step's idempotency key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from baton_common.egress import EgressRefused, read_capped
from baton_common.limits import limits
from baton_common.telemetry import current_traceparent

from baton_executor.tools.base import ToolContext, ToolError, retry_after
from baton_executor.tools.misc import catalogue_spec

# The text kept of a response: half the step output limit (BATON_MAX_STEP_OUTPUT_BYTES), so a
# plain-text page fits with its headers; a JSON body is also parsed into ``json`` (its size twice).
MAX_TEXT_BYTES = limits().step_output // 2


@dataclass(frozen=True)
class Answer:
    """A response and the (capped) body read from it."""

    response: httpx.Response
    body: bytes
    truncated: bool

    @property
    def text(self) -> str:
        return self.body.decode(self.response.encoding or "utf-8", "replace")


class HttpRequest:
    """Calls a URL; 5xx, 429 and network failures are retryable, other 4xx are not. A 429 or 503
    with ``Retry-After`` makes the retry wait at least that long."""

    spec = catalogue_spec("http.request")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Send the request and map the response to the output or a ``ToolError``."""
        method = input.get("method", "GET")
        url = input["url"]
        answer = await _send(method, url, _request_args(input, ctx), input, ctx)
        _check_status(method, url, answer, input.get("expect_status"))
        return _output(answer)


def _request_args(input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Headers and body for ``httpx``; our Idempotency-Key wins over a caller's one."""
    headers = httpx.Headers(input.get("headers") or {})
    headers["Idempotency-Key"] = ctx.idempotency_key
    if traceparent := current_traceparent():  # the callee's spans join the step's trace
        headers["traceparent"] = traceparent
    args: dict[str, Any] = {"headers": headers}
    if "json" in input:
        args["json"] = input["json"]
    elif "body" in input:
        args["content"] = input["body"].encode()
    return args


async def _send(
    method: str, url: str, args: dict[str, Any], input: dict[str, Any], ctx: ToolContext
) -> Answer:
    """Do the call through the egress guard, reading at most ``MAX_TEXT_BYTES`` of the body;
    transport failures become ``ToolError``s, a refused address a non-retryable one."""
    timeout = input.get("timeout_s", ctx.timeout_s)
    try:
        async with ctx.http(timeout=timeout, follow_redirects=True) as client:
            async with client.stream(method, url, **args) as response:
                body, truncated = await read_capped(response, MAX_TEXT_BYTES)
                return Answer(response, body, truncated)
    except EgressRefused as exc:
        raise ToolError(f"{method} {url}: {exc}", retryable=False) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # A bad URL fails the same way on every attempt.
        raise ToolError(f"{method} {url}: invalid URL: {exc}", retryable=False) from exc
    except httpx.TooManyRedirects as exc:
        raise ToolError(f"{method} {url}: {exc}", retryable=False) from exc
    except httpx.TimeoutException as exc:
        raise ToolError(f"{method} {url}: timed out after {timeout}s", retryable=True) from exc
    except httpx.TransportError as exc:
        raise ToolError(f"{method} {url}: {type(exc).__name__}: {exc}", retryable=True) from exc


def _check_status(method: str, url: str, answer: Answer, expect: list[int] | None) -> None:
    """Raise unless the status is expected (or, without ``expect_status``, below 400)."""
    status = answer.response.status_code
    ok = status in expect if expect is not None else status < 400
    if ok:
        return
    retryable = status >= 500 or status == 429
    snippet = answer.text[:200]
    headers = answer.response.headers
    wait = retry_after(headers.get("Retry-After")) if status in (429, 503) else None
    raise ToolError(
        f"{method} {url}: HTTP {status}: {snippet}", retryable=retryable, retry_after_s=wait
    )


def _output(answer: Answer) -> dict[str, Any]:
    """Status, headers, text capped at 1 MB (``truncated`` when there was more), and the body
    parsed when it says it is JSON and came whole."""
    output = {
        "status": answer.response.status_code,
        "headers": dict(answer.response.headers),
        "text": answer.text,
        "json": None if answer.truncated else _json(answer),
    }
    return {**output, "truncated": True} if answer.truncated else output


def _json(answer: Answer) -> Any:
    """The parsed body if the content type is JSON and it parses, else ``None``."""
    if "json" not in answer.response.headers.get("content-type", ""):
        return None
    try:
        return json.loads(answer.body)
    except ValueError:
        return None
