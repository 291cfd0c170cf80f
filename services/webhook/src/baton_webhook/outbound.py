"""Outbound deliveries: each due timer is one attempt, sent with the delivery's ``webhook-id``,
a fresh ``webhook-timestamp`` and its signature.

At least once: the timer is leased (pushed past the attempt) before sending and rewritten in the
commit that records the outcome, so a process that dies mid-attempt sends again later, with the
same id. Attempts of one subscription run concurrently: ordering is not promised. Redirects are
followed by hand; every connection passes the egress guard (``baton_common.egress``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from uuid import UUID

import httpx
from baton_common.egress import EgressRefused, read_capped
from baton_common.sealing import SealingError
from baton_common.service import Runtime
from baton_common.store import Commit, ConcurrencyConflict, run_sync

from baton_webhook.application import WebhookApp
from baton_webhook.config import WebhookSettings
from baton_webhook.domain import Delivery, Subscription
from baton_webhook.signing import standard_headers

log = logging.getLogger(__name__)
MAX_REDIRECTS = 5
EXCERPT = 1000
TIMER_BATCH = 200


class Sender:
    """Polls due timers and runs their attempts as tasks (a slow subscriber holds up no other)."""

    def __init__(self, runtime: Runtime, app: WebhookApp, settings: WebhookSettings) -> None:
        self.runtime, self.app, self.settings = runtime, app, settings
        # Every connection (each redirect's too) passes the egress guard.
        self.client = settings.guard().client(
            timeout=settings.send_timeout_s, follow_redirects=False
        )
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def tick(self) -> int:
        assert self.runtime.store is not None
        timers = await self.runtime.store.due_timers_async(datetime.now(UTC), TIMER_BATCH)
        started = 0
        for timer in timers:
            delivery_id = timer.payload.get("delivery_id")
            if not delivery_id or delivery_id in self.inflight:
                continue
            self.inflight.add(delivery_id)
            task = asyncio.create_task(self.attempt(UUID(delivery_id)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1
        return started

    async def stop(self) -> None:
        """Let attempts in hand finish (their outcome is recorded), then close the client."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.settings.send_timeout_s + 5)
        await self.client.aclose()

    async def attempt(self, delivery_id: UUID) -> None:
        try:
            await self._attempt(delivery_id)
        except ConcurrencyConflict:
            log.info("delivery %s changed meanwhile (another replica)", delivery_id)
        except Exception:
            log.exception("delivery %s: attempt failed; its timer fires again", delivery_id)
        finally:
            self.inflight.discard(str(delivery_id))

    async def _attempt(self, delivery_id: UUID) -> None:
        settled, delivery, sub = await run_sync(self.app.due_job, delivery_id)
        if settled is not None:
            await self._commit(settled)
            return
        assert delivery is not None and sub is not None
        await self._commit(self.app.lease(delivery_id, self.settings.send_timeout_s * 2 + 10))
        outcome, retry_after = await self.send(delivery, sub)
        await self._commit(await run_sync(self.app.attempted, delivery_id, outcome, retry_after))
        result = outcome.get("status_code") or outcome.get("error")
        log.info("delivery %s, attempt: %s", delivery_id, result)

    async def _commit(self, commit: Commit) -> None:
        assert self.runtime.store is not None
        rows = await run_sync(self.runtime.store.commit, commit)
        if rows and self.runtime.relay:
            self.runtime.relay.committed(rows)

    async def send(
        self, delivery: Delivery, sub: Subscription
    ) -> tuple[dict[str, Any], float | None]:
        """One attempt: (outcome fields of ``delivery_attempted``, the answer's Retry-After)."""
        s, created = delivery.scheduled, sub.created
        assert s is not None and created is not None
        body = _json(s.payload)
        t0 = time.perf_counter()
        try:
            secret = await run_sync(self.app.sealer.unseal, created.secret)
        except SealingError as exc:  # its key is gone or not configured: nothing is sent
            return _failed(t0, f"the subscription's secret cannot be opened: {exc}"), None
        headers = {
            **standard_headers(secret, s.message_id, body, datetime.now(UTC)),
            "content-type": "application/json",
            "user-agent": "Baton-Webhooks/1",
        }
        try:
            resp, excerpt = await self._post(s.url, body, headers)
        except EgressRefused as exc:
            return _failed(t0, str(exc)), None
        except httpx.HTTPError as exc:
            return _failed(
                t0, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ), None
        ok = 200 <= resp.status_code < 300
        outcome = {
            "ok": ok,
            "status_code": resp.status_code,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 1),
            "response": excerpt,
            "error": None if ok else f"HTTP {resp.status_code}",
        }
        return outcome, _retry_after(resp.headers.get("retry-after"))

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[httpx.Response, str]:
        """POST, following redirects by hand (each one POSTed again); the answer and the
        start of its body (never read whole)."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self.client.build_request("POST", url, content=body, headers=headers)
            resp = await self.client.send(request, stream=True)
            try:
                text, _ = await read_capped(resp, EXCERPT * 4)
            finally:
                await resp.aclose()
            location = resp.headers.get("location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                return resp, text.decode(resp.encoding or "utf-8", "replace")[:EXCERPT]
            url = urljoin(url, location)
        raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects")


def _failed(t0: float, error: str) -> dict[str, Any]:
    latency = round((time.perf_counter() - t0) * 1000, 1)
    return {
        "ok": False,
        "status_code": None,
        "latency_ms": latency,
        "response": "",
        "error": error[:EXCERPT],
    }


def _json(payload: Any) -> bytes:
    import json

    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _retry_after(value: str | None) -> float | None:
    """Seconds or an HTTP date; capped at a day (a subscriber cannot park a delivery for ever)."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return min(86400.0, max(0.0, float(value)))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return min(86400.0, max(0.0, (when - datetime.now(UTC)).total_seconds()))
    return None
