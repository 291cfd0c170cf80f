"""What a tool implementation is: a spec from the catalogue and an async ``run``.

Every built-in tool honours the step's idempotency key (``ctx.idempotency_key``), which stays
the same across all attempts of one step, so a retried call is recognised by whatever it calls.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
from baton_common.catalogue import ToolSpec
from baton_common.egress import EgressGuard, installation_guard
from baton_common.limits import TooLarge, check_size, limits

from baton_executor.steplog import StepLogger


class ToolError(Exception):
    """A tool call failed. ``retryable=False`` skips the remaining attempts (bad input, 4xx);
    ``retry_after_s`` is how long the upstream asked us to wait (HTTP ``Retry-After``)."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class CapabilityRefused(ToolError):
    """A plugin's tool used what its plugin did not declare (or its workspace did not grant):
    the step fails at once, naming the capability."""

    def __init__(self, plugin: str, capability: str, what: str) -> None:
        super().__init__(
            f"plugin {plugin!r} may not {what}: it lacks the capability {capability!r} "
            f"(declare it in CAPABILITIES and grant it: baton plugins enable {plugin} "
            f"--grant {capability})",
            retryable=False,
        )
        self.plugin = plugin
        self.capability = capability


def readable_secrets() -> frozenset[str]:
    """The environment variables a tool may read through ``ctx.secret`` (the operator's list)."""
    raw = os.environ.get("BATON_TOOL_SECRETS") or ""
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


MAX_RETRY_AFTER_S = 3600.0  # an upstream asking for longer is capped: the step's retries decide


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


SANDBOX_ROOT = Path(".baton/sandbox")  # a path is immutable: one for every context


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: the execution, step and attempt, and where the workspace's files live."""

    execution_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    workspace_id: str = "default"
    sandbox_root: Path = SANDBOX_ROOT
    timeout_s: float = 60.0
    # The step's live log (``ctx.log.info("…")``): lines readers follow while the step runs.
    log: StepLogger = field(default_factory=StepLogger.detached)
    agents: Any = None  # an AgentAPI (agent_api.py): messages to the plan's agents
    # What outbound calls may reach: the installation's allowlist, narrowed by the workspace's.
    egress: EgressGuard = field(default_factory=installation_guard)
    # A plugin's tool runs with what its plugin declared and the workspace granted; None: the
    # engine's own tools and agent files, which the operator put there.
    capabilities: frozenset[str] | None = None
    plugin: str | None = None
    # 2+: a worker was lost while running this attempt before (its outcome is unknown).
    deliveries: int = 1
    # Set when the step's execution is cancelled: a long call may stop (MCP tools do).
    cancelled: asyncio.Event | None = None

    def require(self, capability: str, what: str) -> None:
        """``CapabilityRefused`` unless the running tool may use ``capability``."""
        if self.capabilities is not None and capability not in self.capabilities:
            raise CapabilityRefused(self.plugin or "?", capability, what)

    def http(self, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client for a tool or a plugin: every connection passes the egress guard
        (``async with ctx.http(timeout=10) as client: ...``); a refused one raises
        ``EgressRefused`` naming the rule. A plugin's tool needs the ``network`` capability."""
        self.require("network", "call out over the network")
        return self.egress.client(**kwargs)

    def secret(self, name: str) -> str | None:
        """The secret ``name`` (an environment variable on the operator's ``BATON_TOOL_SECRETS``
        list), None when unset. A plugin's tool needs the ``secrets`` capability."""
        self.require("secrets", f"read the secret {name!r}")
        if name not in readable_secrets():
            raise ToolError(
                f"secret {name!r} is not on this installation's BATON_TOOL_SECRETS list",
                retryable=False,
            )
        return os.environ.get(name)

    @property
    def sandbox(self) -> Path:
        """This workspace's folder; files tools never leave it."""
        return self.sandbox_root / self.workspace_id


class Tool(Protocol):
    """A callable tool: ``run`` returns a JSON-serialisable output matching the spec's schema."""

    spec: ToolSpec

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any: ...


def output_too_large(output: Any) -> str | None:
    """Why a tool's output cannot be recorded (an event carries it), or None: over the step
    output limit, or not JSON. The same every time: a retry would not help."""
    try:
        check_size("output", output, limits().step_output)
    except TooLarge as exc:
        return f"{exc} (BATON_MAX_STEP_OUTPUT_BYTES)"
    except (TypeError, ValueError) as exc:
        return f"output is not JSON: {exc}"
    return None
