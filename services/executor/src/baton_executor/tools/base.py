"""What a tool implementation is: a spec from the catalogue and an async ``run``.

Every built-in tool honours the step's idempotency key (``ctx.idempotency_key``), which stays
the same across all attempts of one step, so a retried call is recognised by whatever it calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from baton_common.catalogue import ToolSpec


class ToolError(Exception):
    """A tool call failed. ``retryable=False`` skips the remaining attempts (bad input, 4xx)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: the execution, step and attempt, and where the workspace's files live."""

    execution_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    workspace_id: str = "default"
    sandbox_root: Path = field(default_factory=lambda: Path(".baton/sandbox"))
    timeout_s: float = 60.0

    @property
    def sandbox(self) -> Path:
        """This workspace's folder; files tools never leave it."""
        return self.sandbox_root / self.workspace_id


class Tool(Protocol):
    """A callable tool: ``run`` returns a JSON-serialisable output matching the spec's schema."""

    spec: ToolSpec

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any: ...
