"""``http.request``: an HTTP call that always carries the step's idempotency key."""

from __future__ import annotations

from typing import Any

import httpx
from baton_common.limits import limits
from baton_common.telemetry import current_traceparent

from baton_executor.tools.base import ToolContext, ToolError, retry_after
from baton_executor.tools.misc import catalogue_spec

# The text kept of a response: half the step output limit (BATON_MAX_STEP_OUTPUT_BYTES), so a
# plain-text page fits with its headers; a JSON body is also parsed into ``json`` (its size twice).
MAX_TEXT_BYTES = limits().step_output // 2


class HttpRequest:
    """Calls a URL; 5xx, 429 and network failures are retryable, other 4xx are not. A 429 or 503
    with ``Retry-After`` makes the retry wait at least that long."""

    spec = catalogue_spec("http.request")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Send the request and map the response to the output or a ``ToolError``."""
        method = input.get("method", "GET")
        url = input["url"]
        response = await _send(method, url, _request_args(input, ctx), input, ctx)
        _check_status(method, url, response, input.get("expect_status"))
        return _output(response)


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
) -> httpx.Response:
    """Do the call, turning transport failures into ``ToolError``s."""
    timeout = input.get("timeout_s", ctx.timeout_s)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            return await client.request(method, url, **args)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # A bad URL fails the same way on every attempt.
        raise ToolError(f"{method} {url}: invalid URL: {exc}", retryable=False) from exc
    except httpx.TimeoutException as exc:
        raise ToolError(f"{method} {url}: timed out after {timeout}s", retryable=True) from exc
    except httpx.TransportError as exc:
        raise ToolError(f"{method} {url}: {type(exc).__name__}: {exc}", retryable=True) from exc


def _check_status(
    method: str, url: str, response: httpx.Response, expect: list[int] | None
) -> None:
    """Raise unless the status is expected (or, without ``expect_status``, below 400)."""
    status = response.status_code
    ok = status in expect if expect is not None else status < 400
    if ok:
        return
    retryable = status >= 500 or status == 429
    snippet = response.text[:200]
    wait = retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    raise ToolError(
        f"{method} {url}: HTTP {status}: {snippet}", retryable=retryable, retry_after_s=wait
    )


def _output(response: httpx.Response) -> dict[str, Any]:
    """Status, headers, text capped at ``MAX_TEXT_BYTES``, and the body parsed when it says it
    is JSON."""
    text = response.content[:MAX_TEXT_BYTES].decode(response.encoding or "utf-8", "replace")
    return {
        "status": response.status_code,
        "headers": dict(response.headers),
        "text": text,
        "json": _json(response),
    }


def _json(response: httpx.Response) -> Any:
    """The parsed body if the content type is JSON and it parses, else ``None``."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None
