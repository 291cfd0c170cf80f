"""The gateway's one aggregate: an execution request and the commands people send about it.

Recording them here (instead of only publishing) makes intake durable and idempotent for as
long as the store lives: an idempotency key maps to a fixed execution id, and the store's
uniqueness of (id, version 1) decides, once and for all, which request won.
"""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.aggregate import Aggregate


class GatewayError(Exception):
    """Base of the gateway's errors; each maps to an HTTP status."""

    status = 400


class NotFound(GatewayError):
    """No such execution."""

    status = 404


class Conflict(GatewayError):
    """The request contradicts what was recorded before."""

    status = 409


class ExecutionRequest(Aggregate):
    """What was asked for, and the pause/resume/cancel commands sent since."""

    request: c.ExecutionRequested | None = None
    cancel_requested = False

    def on_requested(self, e: c.ExecutionRequested) -> None:
        self.request = e

    def on_cancel_requested(self, _e: Any) -> None:
        self.cancel_requested = True

    def same_as(self, other: c.ExecutionRequested) -> bool:
        mine = self.request
        return mine is not None and (mine.request, mine.plan, mine.inputs) == (
            other.request,
            other.plan,
            other.inputs,
        )
