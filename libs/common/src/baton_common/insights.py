"""``GET /v1/insights``: the gateway asks the planner (core NATS request/reply, queue group
``planner``) what its learning engine knows about a workspace."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def insights_subject(root: str) -> str:
    """Outside the ``<root>.>`` stream: a question, not an event."""
    return f"{root}_rpc.planner.insights"


class InsightsRequest(BaseModel):
    workspace_id: str


class InsightsReply(BaseModel):
    status: int = 200
    detail: str = ""
    body: dict[str, Any] = Field(default_factory=dict)
