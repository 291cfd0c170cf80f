"""Pure, cheap tools run inside the executor, as Temporal's local activities do.

A tool declared ``inline`` in the catalogue (a template, a JSON query, a no-op agent) computes its
output from its input alone: no I/O, no clock, no randomness beyond a seed from its idempotency key.
Sending such a step through the bus to a worker costs two hops and a commit per step for nothing
a worker adds. The executor runs it itself.

Durability is the same as a worker's step: a step's outcome is committed before any step that
depends on it starts. A step whose inputs were all committed before the command that dispatches
it runs at once, and its outcome is in that command's commit; a step that depends on an outcome
decided in the same command waits, undispatched, for that commit and runs right after it (the
application's ``follow_up``), so a chain of K pure steps takes K commits, one per step. The
commit a step waits for carries the execution's resume timer: if the executor dies between the
two commits, the timer dispatches the step then (same input, same idempotency key, the same
result, because the tool is pure).

A step run here is recorded by one event, as Temporal records a local activity in one marker:
``StepSucceeded`` with its ``call`` (the tool, input and key a ``StepDispatched`` would carry).
Views, replay, tracing and the projections read the dispatch from it (``contracts.dispatch_of``),
so they do not tell the two paths apart. A failed attempt is ``StepDispatched`` marked
``inline``, then ``StepFailed``, and is retried like any step. The worker path is kept for every
tool with side effects, for a call that could wait (a mock agent with latency), and for all
tools when ``BATON_INLINE_TOOLS=0`` (the benchmark's A/B switch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from baton_common import contracts as c
from baton_common import perf

from baton_executor.steplog import StepLogger, StepLogLimits
from baton_executor.tools.base import Tool, ToolContext, ToolError, output_too_large


@dataclass(frozen=True)
class InlineResult:
    """One attempt's outcome, as a worker would have reported it."""

    ok: bool
    output: Any = None
    error: str | None = None
    retryable: bool = True
    duration_ms: float = 0.0
    ask: c.ToolAsk | None = None  # not ok: the tool asks a person (a worker's report only)


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


class InlineRunner(Protocol):
    """The executor's port: whether a call may run in process, and running it (None: it could
    not, after all; a tool that suspends is not pure)."""

    def accepts(self, call: InlineCall) -> bool: ...

    def __call__(self, call: InlineCall) -> InlineResult | None: ...


class Never:
    """The runner when inline execution is off (and in domain unit tests): workers run all."""

    def accepts(self, call: InlineCall) -> bool:
        return False

    def __call__(self, call: InlineCall) -> None:
        return None


never = Never()


class Inline:
    """Runs the built-in tools the catalogue declares inline, when the call cannot wait."""

    def __init__(self, tools: dict[str, Tool] | None = None) -> None:
        from baton_executor.tools.registry import builtin_tools  # the tools' imports are heavy

        every = tools or builtin_tools()
        self.tools = {name: tool for name, tool in every.items() if tool.spec.inline}
        self.log_limits = StepLogLimits()  # read from the environment once, not per call

    def accepts(self, call: InlineCall) -> bool:
        """Not pure, or asked to take time: a worker holds it."""
        return call.tool in self.tools and not call.input.get("latency_ms")

    def __call__(self, call: InlineCall) -> InlineResult | None:
        if not self.accepts(call):
            return None
        result = self._run(call)
        if result is not None:  # the same histogram a worker's attempt goes to
            outcome = "succeeded" if result.ok else "failed"
            perf.STEP_SECONDS.labels(call.tool, outcome).observe(result.duration_ms / 1000)
        return result

    def _run(self, call: InlineCall) -> InlineResult | None:
        tool = self.tools[call.tool]
        started = time.perf_counter()
        errors = sorted(tool.spec.input_validator().iter_errors(call.input), key=str)
        if errors:
            path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
            error = f"input does not fit {call.tool}: {path}: {errors[0].message}"
            return InlineResult(ok=False, error=error, retryable=False, duration_ms=_ms(started))
        ctx = ToolContext(
            execution_id=call.execution_id,
            step_id=call.step_id,
            attempt=call.attempt,
            idempotency_key=call.idempotency_key,
            workspace_id=call.workspace_id,
            log=StepLogger(None, None, self.log_limits),
        )
        coroutine = tool.run(call.input, ctx)
        try:
            # A pure tool's ``run`` never suspends: driving it one step runs it to the end, with
            # the very code a worker runs. One that suspends is not pure; a worker gets it.
            coroutine.send(None)
        except StopIteration as done:
            if too_large := output_too_large(done.value):
                return InlineResult(
                    ok=False, error=too_large, retryable=False, duration_ms=_ms(started)
                )
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
