"""Failed authentications, counted per key id and per client address (token buckets).

Past the allowance a caller is answered 429 with ``Retry-After`` before any scrypt runs, so a
known key id with guessed secrets costs the gateway a few hashes a minute, not one a request.
The counts live in each gateway process: N replicas allow N times the rate, still far below
what brute force needs against 256-bit secrets; the point is the CPU, not the odds.
"""

from __future__ import annotations

import math
import threading
import time

from baton_gateway.domain import GatewayError

MAX_TRACKED = 50_000  # names remembered at most; full buckets are forgotten first


class TooManyFailures(GatewayError):
    """Too many failed sign-ins from this key id or address: wait ``retry_after`` seconds."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Throttle:
    """A token bucket per name: ``burst`` failures at once, then one per ``refill_s``."""

    def __init__(self, burst: int, refill_s: float) -> None:
        self.burst, self.refill_s = burst, refill_s
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, as of monotonic)
        self._lock = threading.Lock()  # authentication runs in worker threads

    def wait_s(self, name: str) -> float:
        """Seconds until ``name`` may fail once more (0: it may now)."""
        with self._lock:
            tokens = self._tokens(name, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) * self.refill_s

    def failed(self, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._buckets[name] = (self._tokens(name, now) - 1, now)
            if len(self._buckets) > MAX_TRACKED:
                self._forget_full(now)

    def _tokens(self, name: str, now: float) -> float:
        tokens, at = self._buckets.get(name, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) / self.refill_s)

    def _forget_full(self, now: float) -> None:
        full = [n for n in self._buckets if self._tokens(n, now) >= self.burst]
        for name in full:
            del self._buckets[name]


class FailedLogins:
    """The two throttles of authentication: per key id (guessing one key's secret) and per
    client address (guessing across keys)."""

    def __init__(self) -> None:
        self.by_key = Throttle(burst=5, refill_s=2.0)
        self.by_address = Throttle(burst=30, refill_s=1.0)

    def check(self, key_id: str | None, address: str | None) -> None:
        """Raise ``TooManyFailures`` when either has failed too often lately."""
        waits = [self.by_address.wait_s(address)] if address else []
        waits += [self.by_key.wait_s(key_id)] if key_id else []
        wait = max(waits, default=0.0)
        if wait > 0:
            raise TooManyFailures(
                "too many failed sign-ins for this key or from this address; "
                f"try again in {math.ceil(wait)} s",
                max(1, math.ceil(wait)),
            )

    def failed(self, key_id: str | None, address: str | None) -> None:
        if address:
            self.by_address.failed(address)
        if key_id:
            self.by_key.failed(key_id)
