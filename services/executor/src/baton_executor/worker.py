"""Tool workers: take dispatched steps from JetStream, run the tool, report the result.

A worker holds a step like a lease: while the tool runs it tells JetStream it is still in
progress; if the worker dies, the lease (ack wait) runs out and another worker gets the same
attempt with the same idempotency key. The result is published with a message id derived from
(execution, step, attempt, kind), so a repeated report is dropped by the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from baton_common import contracts as c
from baton_common import logs, perf
from baton_common.bus import Bus
from baton_common.consumer import Puller
from baton_common.discovery import plugin_needed, plugin_package
from baton_common.egress import EgressGuard, parse_allow
from baton_common.events import EventDecodeError, registry
from baton_common.sealing import PostgresKeyStore, Sealer, SealingError, sealed_values
from baton_common.secretinputs import open_sealed, scrub
from baton_common.telemetry import context_from, tracer
from baton_common.tracing import step_attributes, step_finished
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import FetchTimeoutError

from baton_executor import steplog
from baton_executor.agent_api import AgentAPI
from baton_executor.extensions import StepHooks, late_tool
from baton_executor.stand_ins import simulated, stand_in_for
from baton_executor.tools.base import Tool, ToolContext, ToolError, output_too_large
from baton_executor.tools.discovered import LiveTools
from baton_executor.tools.registry import builtin_tools

log = logging.getLogger(__name__)
MAX_DELIVERIES = 5
# Tools another service runs from its own consumer of the same subject (the calendar service owns
# its aggregates and commits with its calls). A task's tool is not in its subject, so the
# generic workers see these tasks too: they ack them and leave them alone.
SERVED_ELSEWHERE = (
    "calendar.",
    "agent.",
    "context.",
)  # agent/context: the executor (coordination.py)


class Worker:
    """Runs up to ``concurrency`` tool calls at once from the shared work consumer."""

    def __init__(
        self,
        bus: Bus,
        *,
        concurrency: int = 64,
        tools: dict[str, Tool] | None = None,
        sandbox_root: Path | None = None,
    ) -> None:
        self.bus = bus
        self.concurrency = concurrency
        self.tools: dict[str, Tool] | LiveTools = tools or LiveTools(builtin_tools())
        self.hooks = StepHooks(bus)  # plugins' hooks around each call
        self.sandbox_root = sandbox_root or bus.settings.data_dir / "sandbox"
        self.egress = EgressGuard(parse_allow(bus.settings.egress_allow))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.slots = asyncio.Semaphore(concurrency)
        self.running: set[asyncio.Task[None]] = set()
        # id(task message) -> (message, when its lease was last renewed); Msg is not hashable
        self.leases: dict[int, tuple[Msg, float]] = {}
        self.completed = 0
        self._stopping = False
        self._sealer: Sealer | None = None  # made at the first sealed input (secretinputs)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.bus.settings
        config = api.ConsumerConfig(
            durable_name="workers",
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=10_000,
            filter_subject=f"{s.subject_root}.*.execution.step_dispatched",
        )
        with contextlib.suppress(Exception):
            await self.bus.js.add_consumer(s.stream, config=config)
        self.sub = await self.bus.js.pull_subscribe_bind(durable="workers", stream=s.stream)
        self.puller = Puller(self.sub)
        steplog.install_handler()
        self._task = asyncio.create_task(self._run(), name="worker")
        self._renewer = asyncio.create_task(self._renew_leases(), name="leases")

    async def stop(self) -> None:
        """Stop taking work; let running calls finish and report (SIGTERM drain)."""
        self._stopping = True
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.running:
            await asyncio.wait(self.running, timeout=60)
        self._renewer.cancel()
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self.running)
            if free <= 0:
                await asyncio.sleep(0.005)
                continue
            try:
                msgs = await self.puller.fetch(min(free, 256), timeout=0.5)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("worker fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                task = asyncio.create_task(self._take(msg))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _take(self, msg: Msg) -> None:
        try:
            task = registry().decode(msg.data)
            if not isinstance(task, c.StepDispatched):
                raise EventDecodeError(f"not a task: {task.type}")
        except EventDecodeError as exc:
            await self.bus.park(msg, "workers", str(exc))
            await msg.ack()
            return
        if task.inline or (task.tool.startswith(SERVED_ELSEWHERE) and not simulated(task)):
            await msg.ack()  # the executor ran it already, or another service serves it
            return
        deliveries = msg.metadata.num_delivered
        if deliveries > 1:
            perf.REDELIVERIES.labels("workers").inc()
        if deliveries > MAX_DELIVERIES:
            error = f"worker lost the step {deliveries - 1} times (crash or kill while running it)"
            result = self._result(task, ok=False, error=error, retryable=False)
        else:
            with tracer().start_as_current_span(
                f"step {task.step_id} {task.tool}",
                context=context_from(msg.headers),
                attributes=step_attributes(task),
            ) as span:
                result = step_finished(span, await self._run_with_lease(task, msg))
        try:
            await self._report(result)
        except Exception as exc:  # cannot report: let the lease run out and try again
            log.warning("could not publish result of %s: %s", task.idempotency_key, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        await msg.ack()
        self.completed += 1

    async def _report(self, result: c.TaskFinished) -> None:
        """Publish the result; one the bus refuses as too large is reported as a failure (its
        output under BATON_MAX_STEP_OUTPUT_BYTES, but the server's max_payload is smaller)."""
        try:
            await self.bus.publish([result])
        except MaxPayloadError:
            error = "the step's result is larger than the bus accepts (NATS max_payload)"
            refused = result.model_copy(
                update={"ok": False, "output": None, "error": error, "retryable": False}
            )
            await self.bus.publish([refused])

    async def _run_with_lease(self, task: c.StepDispatched, msg: Msg) -> c.TaskFinished:
        self.leases[id(msg)] = (msg, time.monotonic())
        # The attempt's live log, made before the plugins' hooks run: their lines are the step's.
        logger = steplog.StepLogger(self.bus, task)
        try:
            return await self.hooks.around(
                task, functools.partial(self._call, logger=logger), logger
            )
        finally:
            await logger.close()  # an attempt's lines come before its result
            self.leases.pop(id(msg), None)

    async def _renew_leases(self) -> None:
        """One loop for every task in hand: tell JetStream the slow ones are still being worked on,
        so their ack wait (the lease) does not run out while the worker is alive."""
        interval = max(0.5, self.bus.settings.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval / 2)
            due = time.monotonic() - interval
            for key, (msg, since) in list(self.leases.items()):
                if since <= due and key in self.leases:
                    self.leases[key] = (msg, time.monotonic())
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

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
                egress=self.egress.lazily(functools.partial(self._egress_lists, task.workspace_id)),
                capabilities=capabilities,
                plugin=plugin,
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
        self,
        task: c.StepDispatched,
        *,
        ok: bool,
        output: Any = None,
        error: str | None = None,
        retryable: bool = True,
        started: float | None = None,
        retry_after_s: float | None = None,
    ) -> c.TaskFinished:
        if ok and (too_large := output_too_large(output)):
            ok, output, error, retryable = False, None, too_large, False  # the same every time
        key = f"{task.aggregate_id}:{task.step_id}:{task.attempt}:{task.kind}"
        duration = (time.perf_counter() - started) * 1000 if started else 0.0
        return c.TaskFinished(
            **task.caused(),
            event_id=uuid5(NAMESPACE_URL, f"baton:task:{key}"),
            aggregate_id=task.aggregate_id,
            step_id=task.step_id,
            attempt=task.attempt,
            kind=task.kind,
            ok=ok,
            output=output,
            error=error,
            retryable=retryable,
            duration_ms=duration,
            worker=self.name,
            retry_after_s=retry_after_s,
        )


def _scrubbed(result: c.TaskFinished, secrets: list[str]) -> c.TaskFinished:
    return result.model_copy(
        update={"output": scrub(result.output, secrets), "error": scrub(result.error, secrets)}
    )


def _check_input(tool: Tool, value: dict[str, Any]) -> None:
    errors = sorted(tool.spec.input_validator().iter_errors(value), key=str)
    if errors:
        path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
        raise ToolError(
            f"input does not fit {tool.spec.name}: {path}: {errors[0].message}", retryable=False
        )
