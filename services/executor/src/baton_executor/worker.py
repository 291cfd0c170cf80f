"""Tool workers: take dispatched steps from JetStream, run the tool, report the result.

The loop, the leases and the once-only report are the kit's (``baton_common.kit.toolrunner``);
this module is what a generic worker runs: the installed tools, with the attempt's live log,
plugins' hooks, egress lists and capabilities.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from baton_common import contracts as c
from baton_common import logs, perf
from baton_common.bus import Bus
from baton_common.egress import EgressGuard, parse_allow
from baton_common.followed import plugin_needed, plugin_package
from baton_common.kit.toolrunner import DELIVERIES, ToolRunner, finished, input_problem
from baton_common.sealing import PostgresKeyStore, Sealer, SealingError, sealed_values
from baton_common.secretinputs import open_sealed, scrub

from baton_executor import steplog
from baton_executor.agent_api import AgentAPI
from baton_executor.cancels import Cancels
from baton_executor.extensions import StepHooks, late_tool
from baton_executor.mcp.tool import McpTools
from baton_executor.stand_ins import simulated, stand_in_for
from baton_executor.tools.base import Tool, ToolContext, ToolError, output_too_large
from baton_executor.tools.discovered import LiveTools
from baton_executor.tools.registry import builtin_tools

log = logging.getLogger(__name__)
# Tools another service runs from its own consumer of the same subject (the calendar service owns
# its aggregates and commits with its calls). A task's tool is not in its subject, so the
# generic workers see these tasks too: they ack them and leave them alone.
SERVED_ELSEWHERE = (
    "calendar.",
    "agent.",
    "context.",
)  # agent/context: the executor (coordination.py)


class Worker:
    """Runs up to ``concurrency`` tool calls at once from the shared work consumer (the kit's
    worker loop, durable ``workers``)."""

    def __init__(
        self,
        bus: Bus,
        *,
        concurrency: int = 64,
        tools: dict[str, Tool] | None = None,
        sandbox_root: Path | None = None,
    ) -> None:
        self.bus = bus
        self.mcp = McpTools(bus.settings)
        self.tools: dict[str, Tool] | LiveTools = tools or LiveTools(builtin_tools(), mcp=self.mcp)
        self.cancels = Cancels(bus)
        self.hooks = StepHooks(bus)  # plugins' hooks around each call
        self.sandbox_root = sandbox_root or bus.settings.data_dir / "sandbox"
        self.egress = EgressGuard(parse_allow(bus.settings.egress_allow))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.runner = ToolRunner(
            bus,
            "workers",
            self.name,
            self._attempt,
            takes=_ours,
            concurrency=concurrency,
            park=True,  # the one runner that parks what does not decode
        )
        self._sealer: Sealer | None = None  # made at the first sealed input (secretinputs)

    @property
    def completed(self) -> int:
        return self.runner.completed

    @property
    def running(self) -> set[asyncio.Task[None]]:
        return self.runner.running

    async def start(self) -> None:
        steplog.install_handler()
        await self.cancels.start()
        await self.runner.start()

    async def stop(self) -> None:
        """Stop taking work; let running calls finish and report (SIGTERM drain)."""
        await self.runner.stop()
        await self.mcp.pool.close()

    async def _attempt(self, task: c.StepDispatched) -> c.TaskFinished:
        """One attempt inside the plugins' hooks. Its live log is made before the hooks run
        (their lines are the step's) and closed before the runner reports the result (an
        attempt's lines come before its result)."""
        logger = steplog.StepLogger(self.bus, task)
        try:
            return await self.hooks.around(
                task, functools.partial(self._call, logger=logger), logger
            )
        finally:
            await logger.close()

    async def _call(self, task: c.StepDispatched, logger: steplog.StepLogger) -> c.TaskFinished:
        """Run the tool with the attempt's live log (lines Python ``logging`` writes in the
        tool's task go there too)."""
        token = steplog.current.set(logger)
        try:
            with logs.bound_to(task):
                result = await self._call_tool(task, logger)
        finally:
            steplog.current.reset(token)
        if logger.secrets:  # a tool that echoes a secret input: never in its output or error
            result = _scrubbed(result, logger.secrets)
        outcome = "succeeded" if result.ok else "failed"
        perf.STEP_SECONDS.labels(task.tool, outcome).observe(result.duration_ms / 1000)
        if not result.ok:
            logger.error("attempt %d failed: %s", task.attempt, result.error)
        return result

    async def _egress_lists(self, workspace_id: str) -> tuple[list[str] | None, list[str]]:
        """The workspace's egress allow / deny lists (read when a tool first calls out)."""
        policy = await asyncio.to_thread(self.hooks.policies.get, workspace_id)
        return policy.egress_allow_hosts, policy.egress_deny_hosts

    async def _capabilities(self, tool: str, workspace_id: str) -> tuple[Any, str | None]:
        """What a plugin's tool may use: what its plugin declares and this workspace grants
        (nothing for a tool package without a plugin); None for every other tool."""
        package = plugin_package(tool)
        if package is None:
            return None, None
        needed = plugin_needed(tool)
        if needed is None:
            return frozenset(), package
        plugin, declared = needed
        policy = await asyncio.to_thread(self.hooks.policies.get, workspace_id)
        return frozenset(declared) & frozenset(policy.plugins.get(plugin, ())), plugin

    async def _call_tool(
        self, task: c.StepDispatched, logger: steplog.StepLogger
    ) -> c.TaskFinished:
        started = time.perf_counter()
        tool = self.tools.get(task.tool) or await late_tool(self.tools, task.tool)
        try:
            if (stand_in := stand_in_for(task)) is not None:  # a simulated call: no side effect
                output = await asyncio.wait_for(stand_in, task.timeout_s)
                return self._result(task, ok=True, output=output, started=started)
            if tool is None:
                raise ToolError(f"no worker implements tool {task.tool!r}", retryable=False)
            tool_input, logger.secrets = await self._opened(task)
            _check_input(tool, tool_input)
            capabilities, plugin = await self._capabilities(task.tool, task.workspace_id)
            with self.cancels.watching(task) as cancelled:
                ctx = ToolContext(
                    execution_id=str(task.aggregate_id),
                    step_id=task.step_id,
                    attempt=task.attempt,
                    idempotency_key=task.idempotency_key,
                    workspace_id=task.workspace_id,
                    sandbox_root=self.sandbox_root,
                    timeout_s=task.timeout_s,
                    log=logger,
                    agents=AgentAPI(self.bus, task),
                    egress=self.egress.lazily(
                        functools.partial(self._egress_lists, task.workspace_id)
                    ),
                    capabilities=capabilities,
                    plugin=plugin,
                    deliveries=DELIVERIES.get(),
                    cancelled=cancelled,
                )
                output = await asyncio.wait_for(tool.run(tool_input, ctx), task.timeout_s)
            return self._result(task, ok=True, output=output, started=started)
        except TimeoutError:
            return self._result(
                task, ok=False, error=f"timed out after {task.timeout_s:g}s", started=started
            )
        except ToolError as exc:
            return self._result(
                task,
                ok=False,
                error=str(exc),
                retryable=exc.retryable,
                started=started,
                retry_after_s=exc.retry_after_s,
            )
        except Exception as exc:  # a bug in a tool is still a result, never a lost step
            # without the traceback when the call had secrets: its messages may quote them
            log.error("tool %s crashed", task.tool, exc_info=not logger.secrets)
            return self._result(
                task, ok=False, error=f"{type(exc).__name__}: {exc}", started=started
            )

    async def _opened(self, task: c.StepDispatched) -> tuple[dict[str, Any], list[str]]:
        """The step's input with its sealed secrets opened (right before the call, never
        stored), and the clear secrets, to scrub from what comes back."""
        if not sealed_values(task.input):
            return task.input, []
        try:
            return await asyncio.to_thread(open_sealed, task.input, self._unseal)
        except SealingError as exc:
            raise ToolError(f"a secret input cannot be opened: {exc}", retryable=False) from None

    def _unseal(self, value: str) -> str:
        if self._sealer is None:  # data keys live beside the events (the gateway sealed them)
            s = self.bus.settings
            self._sealer = Sealer(PostgresKeyStore(s.database_url, s.db_schema))
        return self._sealer.unseal(value)

    def _result(
        self, task: c.StepDispatched, *, ok: bool, output: Any = None, **outcome: Any
    ) -> c.TaskFinished:
        """The kit's report of the attempt; an output over the limit fails the step for good."""
        if ok and (too_large := output_too_large(output)):
            ok, output = False, None  # the same every time: not worth retrying
            outcome.update(error=too_large, retryable=False)
        return finished(task, self.name, ok=ok, output=output, **outcome)


def _ours(task: c.StepDispatched) -> bool:
    """Not a step the executor ran itself, nor one another service serves (unless simulated)."""
    return not (task.inline or (task.tool.startswith(SERVED_ELSEWHERE) and not simulated(task)))


def _scrubbed(result: c.TaskFinished, secrets: list[str]) -> c.TaskFinished:
    return result.model_copy(
        update={"output": scrub(result.output, secrets), "error": scrub(result.error, secrets)}
    )


def _check_input(tool: Tool, value: dict[str, Any]) -> None:
    problem = input_problem(tool.spec.input_validator(), tool.spec.name, value)
    if problem:
        raise ToolError(problem, retryable=False)
