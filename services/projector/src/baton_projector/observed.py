"""The observability projections the projector runs besides its views: step logs, metrics."""

from __future__ import annotations

from typing import Any

from baton_projector.logs import LogProjection
from baton_projector.metrics import MetricsProjection


def observed_projections(schema: str) -> list[Any]:
    """Each has ``apply_batch(conn, events)`` and ``truncate(conn)``; they run in the same
    transaction as the views, so they are as exactly-once and as rebuildable as those."""
    return [LogProjection(schema), MetricsProjection(schema)]
