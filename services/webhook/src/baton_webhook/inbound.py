"""``POST /hooks/{endpoint}``: the webhook service's own HTTP listener.

The order of checks is the order of cost and of trust: unknown endpoint (404), size (413) and
content type (415) before reading further, then the signature (401, with the reason), then the
endpoint's rate (429, counted only for signed requests, so a stranger cannot use up a sender's
budget, and once across every replica: ``ratelimit.py``), then the body (400). Only then is the
receipt committed, together with the start it asks for, and only after that commit is the 2xx
sent: an accepted webhook is never lost.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import psycopg
from baton_common import jsontext, tracing
from baton_common.bodylimit import BodyLimit
from baton_common.errors import ServiceError
from baton_common.limits import limits
from baton_common.service import Runtime
from baton_common.store import ConcurrencyConflict, EventTooLarge, commit_of, run_sync
from baton_common.telemetry import context_from
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace

from baton_webhook.application import WebhookApp
from baton_webhook.domain import Endpoint
from baton_webhook.ratelimit import RateLimit
from baton_webhook.signing import SignatureInvalid, verify

# Never stored: they authenticate the request and are worth nothing after it.
SECRET_HEADERS = {
    "authorization",
    "cookie",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
}
ID_HEADERS = {"standard": "webhook-id", "github": "x-github-delivery"}


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status, headers=headers)


def create_inbound(runtime: Runtime, app: WebhookApp, limiter: RateLimit) -> FastAPI:
    api = FastAPI(title="Baton webhooks (inbound)", docs_url=None, redoc_url=None)
    # The installation's limit on any request body, as at the gateway (the other door).
    api.add_middleware(BodyLimit, limit=limits().request)
    api.state.counts = Counter()  # answers by status, for /metrics

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/hooks/{endpoint_id}")
    async def hook(endpoint_id: str, request: Request) -> JSONResponse:
        response = await _hook(runtime, app, limiter, endpoint_id, request)
        api.state.counts[response.status_code] += 1
        return response

    return api


async def _hook(
    runtime: Runtime, app: WebhookApp, limiter: RateLimit, endpoint_id: str, request: Request
) -> JSONResponse:
    endpoint = await run_sync(app.live_endpoint, endpoint_id)
    if endpoint is None or endpoint.created is None:
        return _error(404, f"no webhook endpoint {endpoint_id}")
    refused = _refuse_shape(endpoint, request)
    if refused is not None:
        return refused
    limit = _body_limit(endpoint)
    body = await _read(request, limit)
    if body is None:
        return _error(413, f"the body is larger than {limit} bytes")
    return await _accept(runtime, app, limiter, endpoint, request, body)


def _body_limit(endpoint: Endpoint) -> int:
    """The endpoint's own limit, never above the installation's limit on inputs: the body
    becomes an event (and the inputs of the execution it starts)."""
    assert endpoint.created is not None
    return min(endpoint.created.max_body_bytes, limits().inputs)


def _refuse_shape(endpoint: Endpoint, request: Request) -> JSONResponse | None:
    e = endpoint.created
    assert e is not None
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > _body_limit(endpoint):
        return _error(413, f"the body is larger than {_body_limit(endpoint)} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if e.content_types and kind not in e.content_types:
        allowed = ", ".join(e.content_types)
        return _error(415, f"content type {kind or 'none'!r} is not accepted here ({allowed})")
    return None


async def _read(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` (without reading the rest)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _accept(
    runtime: Runtime,
    app: WebhookApp,
    limiter: RateLimit,
    endpoint: Endpoint,
    request: Request,
    body: bytes,
) -> JSONResponse:
    e = endpoint.created
    assert e is not None and runtime.store is not None
    headers = {k.lower(): v for k, v in request.headers.items()}
    secrets_ = await run_sync(app.secrets_of, endpoint) if e.scheme != "none" else []
    try:
        verify(e.scheme, secrets_, body, headers, e.tolerance_s)
    except SignatureInvalid as exc:
        return _error(401, str(exc))
    try:
        wait = await limiter.retry_after(str(endpoint.id), e.rate_per_minute)
    except psycopg.Error as exc:  # nothing is stored either: the sender tries again
        return _error(503, f"the rate limit cannot be checked now ({type(exc).__name__})")
    if wait > 0:
        return _error(
            429, "too many requests for this endpoint", {"Retry-After": str(math.ceil(wait))}
        )
    payload, problem = _parse(body, headers)
    if problem:
        return _error(400, problem)
    delivery_id = _delivery_id(e.scheme, headers, payload, body)
    kept = {k: v for k, v in headers.items() if k not in SECRET_HEADERS}
    try:
        commit, start = await run_sync(app.receive, endpoint, delivery_id, payload, kept)
    except ServiceError as exc:
        return _error(exc.status, exc.detail)
    received = tracing.begin(  # the execution's trace starts here (or at the sender's span)
        "POST /hooks/{endpoint}", commit.events, context_from(headers), trace.SpanKind.SERVER
    )
    commit = replace(commit, events=received)
    answer = {"delivery_id": delivery_id, "execution_id": str(start.correlation_id)}
    try:
        rows = await commit_of(runtime.store, commit)
    except ConcurrencyConflict:  # the receipt exists: acknowledged, nothing new starts
        return JSONResponse({**answer, "duplicate": True}, 200)
    except EventTooLarge as exc:  # a body that grows as it is recorded (escapes): nothing stored
        return _error(413, str(exc))
    if runtime.relay:
        runtime.relay.committed(rows)
    return JSONResponse({**answer, "duplicate": False}, 202)


def _parse(body: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if not (kind == "application/json" or kind.endswith("+json")):
        return body.decode(errors="replace"), None
    try:
        # A sender's lone surrogate escape (text cut inside an emoji) is kept as U+FFFD: the
        # delivery is theirs to make, and refusing it would lose it after their retries.
        return jsontext.loads_unicode(body), None
    except RecursionError:  # the decoder's own guard: was a 500
        return None, "malformed JSON: nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"malformed JSON: {exc}"


def _delivery_id(scheme: str, headers: dict[str, str], payload: Any, body: bytes) -> str:
    """The sender's id of this delivery (its retries repeat it); without one, the body's hash,
    so the same body sent again is the same delivery."""
    given = headers.get(ID_HEADERS.get(scheme, ""))
    if not given and scheme == "stripe" and isinstance(payload, dict):
        given = payload.get("id")  # Stripe's event id (evt_…) is the same on its retries
    given = given or headers.get("idempotency-key")
    return str(given)[:150] if given else "sha256:" + hashlib.sha256(body).hexdigest()
