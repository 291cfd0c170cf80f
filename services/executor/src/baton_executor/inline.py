"""Pure, cheap tools run inside the executor, as Temporal's local activities do.

A tool declared ``inline`` in the catalogue (a template, a JSON query, a no-op agent) computes its
output from its input alone: no I/O, no clock, no randomness beyond a seed from its idempotency key.
Sending such a step through the bus to a worker costs two hops and a commit per step for nothing
a worker adds. The executor runs it where it decides the step, and records the dispatch and the
result in the same commit as the decision, so the chain's next step is decided in that commit too.

Durability is unchanged: nothing of an inline step is visible until its commit, and a crash before
the commit redoes the whole decision, with the same result, because the tool is pure. The events
are the ones a worker-run step has (``StepDispatched`` marked ``inline``, then ``StepSucceeded`` or
``StepFailed``), so views, replay and projections do not tell the two paths apart.

The worker path is kept for every tool with side effects, for a call that could wait (a mock agent
with latency), and for all tools when ``BATON_INLINE_TOOLS=0`` (the benchmark's A/B switch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baton_executor.tools.base import Tool, ToolContext, ToolError


@dataclass(frozen=True)
class InlineResult:
    """One attempt's outcome, as a worker would have reported it."""

    ok: bool
    output: Any = None
    error: str | None = None
    retryable: bool = True
    duration_ms: float = 0.0


@dataclass(frozen=True)
class InlineCall:
    """What the executor knows about a step when it dispatches it."""

    tool: str
    input: dict[str, Any]
    execution_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    workspace_id: str


# The executor's port: a call it may run in process, or None (a worker runs it).
InlineRunner = Callable[[InlineCall], InlineResult | None]


def never(_call: InlineCall) -> None:
    """The runner when inline execution is off (and in domain unit tests): workers run all."""
    return None


class Inline:
    """Runs the built-in tools the catalogue declares inline, when the call cannot wait."""

    def __init__(self, tools: dict[str, Tool] | None = None) -> None:
        from baton_executor.tools.registry import builtin_tools  # the tools' imports are heavy

        every = tools or builtin_tools()
        self.tools = {name: tool for name, tool in every.items() if tool.spec.inline}

    def __call__(self, call: InlineCall) -> InlineResult | None:
        tool = self.tools.get(call.tool)
        if tool is None or call.input.get("latency_ms"):
            return None  # not pure, or asked to take time: a worker holds it
        started = time.perf_counter()
        errors = sorted(tool.spec.input_validator().iter_errors(call.input), key=str)
        if errors:
            path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
            error = f"input does not fit {call.tool}: {path}: {errors[0].message}"
            return InlineResult(ok=False, error=error, retryable=False)
        ctx = ToolContext(
            execution_id=call.execution_id,
            step_id=call.step_id,
            attempt=call.attempt,
            idempotency_key=call.idempotency_key,
            workspace_id=call.workspace_id,
        )
        coroutine = tool.run(call.input, ctx)
        try:
            # A pure tool's ``run`` never suspends: driving it one step runs it to the end, with
            # the very code a worker runs. One that suspends is not pure; a worker gets it.
            coroutine.send(None)
        except StopIteration as done:
            return InlineResult(ok=True, output=done.value, duration_ms=_ms(started))
        except ToolError as exc:
            return InlineResult(
                ok=False, error=str(exc), retryable=exc.retryable, duration_ms=_ms(started)
            )
        except Exception as exc:  # a bug in a tool is a failed attempt, as on a worker
            return InlineResult(
                ok=False, error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started)
            )
        coroutine.close()
        return None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
