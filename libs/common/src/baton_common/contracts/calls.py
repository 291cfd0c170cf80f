"""The shapes of a call to a service over NATS request/reply and of its answer, shared by the
services whose calls carry nothing more (the kit's ``CallServer`` serves them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServiceCall", "ServiceReply"]


class ServiceCall(BaseModel):
    """``op`` (a verb of the service's handler table) for the caller's workspace and actor,
    forwarded by the gateway, with a JSON ``body``."""

    model_config = ConfigDict(extra="forbid")
    op: str
    workspace_id: str
    actor: str | None = None
    body: dict[str, Any] = Field(default_factory=dict)


class ServiceReply(BaseModel):
    """A service's answer: an HTTP-like status, a reason when it failed, and a body."""

    status: int
    detail: str = ""
    body: Any = None
