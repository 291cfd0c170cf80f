"""What the executor and workers add for tools and plugins: scanning the catalogue (at start and
on request), finding a tool that arrived a moment ago, and running plugins' hooks around each step.

The executor scans and publishes the catalogue that everyone else follows; workers only follow it.
A worker runs untrusted tool code, so its bus key may not announce tools (``busauth.GRANTS``):
one compromised worker must not be able to change what every process runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from baton_common import contracts as c
from baton_common.discovery import Scan, refresh_subject
from baton_common.followed import FOLLOWER, current_catalogue
from baton_common.plugins import Outcome, plugin_host
from baton_common.scanchild import scan_isolated
from baton_common.service import every
from baton_common.workspaces import PolicyReader

from baton_executor.steplog import StepLogger, ThreadSafeLog

log = logging.getLogger(__name__)


Source = Callable[[Scan], None]  # adds tools from elsewhere (MCP servers) to a scan


async def publish_scan(
    bus: Any, scanned_by: str, extra: Source | None = None
) -> c.CatalogueChanged:
    """Scan now (in a child process: it imports every installed tool and plugin), add the
    registered MCP servers' tools (``extra``), and publish the result if it differs from the
    catalogue in force."""
    found = await asyncio.to_thread(scan_isolated)
    if extra is not None:
        extra(found)
    follower = FOLLOWER[0]
    return await follower.publish(found, scanned_by, via=bus)


async def serve_discovery(bus: Any, scanned_by: str, extra: Source | None = None) -> None:
    """Scan once at start, then answer ``tools.refresh`` requests (one replica takes each)."""
    try:
        await publish_scan(bus, scanned_by, extra)
    except Exception as exc:  # the built-ins still run; a refresh will try again
        log.warning("tool scan at start failed: %s", exc)

    async def on_refresh(msg: Any) -> None:
        if not bus.verified(msg, "tools refresh"):
            return
        try:
            event = await publish_scan(bus, scanned_by, extra)
            await msg.respond(event.model_dump_json().encode())
        except Exception as exc:
            log.exception("tool refresh failed")
            await msg.respond(b'{"error": "%s"}' % str(exc).encode()[:500])

    root = bus.settings.subject_root
    await bus.nc.subscribe(refresh_subject(root), queue="tool-scanners", cb=on_refresh)


async def keep_catalogue(bus: Any) -> None:
    """The event stream drops its oldest messages (``BATON_STREAM_MAX_AGE``): look a few times
    per age limit (at most hourly) and publish the catalogue in force again once it has gone."""
    period = min(3600.0, bus.settings.stream_max_age_s / 4)
    keep = functools.partial(FOLLOWER[0].keep_on_stream, bus)  # the executor's key publishes it
    await every(period, keep, "keeping the tool catalogue on the stream")


async def late_tool(tools: Any, name: str) -> Any:
    """A tool published a moment ago may not have reached this worker yet: read the catalogue
    from the stream once before saying no worker has it."""
    if FOLLOWER:
        try:
            await FOLLOWER[0].sync()
        except Exception as exc:
            log.warning("catalogue sync failed: %s", exc)
    return tools.get(name)


Call = Callable[[c.StepDispatched], Awaitable[c.TaskFinished]]


class StepHooks:
    """Plugins' ``before_step`` / ``after_step`` / ``on_step_failure`` around a tool call; a hook
    that raises or hangs is published as ``execution.step_hook_failed`` and the step goes on.
    A hook that takes ``log`` gets the step's live log: its lines show with the tool's."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        settings = bus.settings
        self.policies = PolicyReader(settings.database_url, settings.db_schema)

    async def around(
        self, task: c.StepDispatched, call: Call, logger: StepLogger | None = None
    ) -> c.TaskFinished:
        host = plugin_host()
        if not host.names() or task.kind != "run":
            return await call(task)
        policy = await asyncio.to_thread(self.policies.get, task.workspace_id)
        if not any(host.runs_in(p, policy.plugins) for p in host.names()):
            return await call(task)
        step = {
            "execution_id": str(task.aggregate_id),
            "step_id": task.step_id,
            "attempt": task.attempt,
            "tool": task.tool,
            "input": task.input,
            "workspace_id": task.workspace_id,
        }
        log = ThreadSafeLog(logger or StepLogger.detached(), asyncio.get_running_loop())
        outcomes = await host.call("before_step", policy.plugins, step=step, log=log)
        result = await call(task)
        if result.ok:
            outcomes += await host.call(
                "after_step", policy.plugins, step=step, output=result.output, log=log
            )
        else:
            outcomes += await host.call(
                "on_step_failure", policy.plugins, step=step, error=result.error or "", log=log
            )
        await self._report(task, [o for o in outcomes if o.error])
        return result

    async def _report(self, task: c.StepDispatched, failed: list[Outcome]) -> None:
        if not failed:
            return
        key = f"{task.aggregate_id}:{task.step_id}:{task.attempt}"
        events = [
            c.StepHookFailed(
                **task.caused(),
                event_id=uuid5(NAMESPACE_URL, f"baton:hook:{key}:{o.plugin}:{o.hook}"),
                aggregate_id=task.aggregate_id,
                step_id=task.step_id,
                attempt=task.attempt,
                plugin=o.plugin,
                hook=o.hook,
                error=o.error or "",
            )
            for o in failed
        ]
        try:
            await self.bus.publish(events)
        except Exception as exc:  # the step's own result matters more than this report
            log.warning("could not report hook failures of %s: %s", key, exc)


STEP_HOOKS = ("before_step", "after_step", "on_step_failure")


class HookedInline:
    """The executor's inline runner, except in workspaces whose plugins watch steps: their steps
    go to a worker, where the hooks run (an inline step is decided inside a commit, where no
    plugin code may run)."""

    def __init__(self, inline: Any, policies: PolicyReader) -> None:
        self.inline = inline
        self.policies = policies

    def accepts(self, call: Any) -> bool:
        if self._watched(call.workspace_id):
            return False
        return bool(self.inline.accepts(call))

    def __call__(self, call: Any) -> Any:
        return self.inline(call) if self.accepts(call) else None

    def _watched(self, workspace_id: str) -> bool:
        """Whether a plugin this workspace runs has step hooks, read from the catalogue's
        description of it: the executor never imports plugin code to find out."""
        event = current_catalogue()
        if event is None or not event.plugins:
            return False
        grants = self.policies.get(workspace_id).plugins
        return any(
            p["name"] in grants
            and set(p["capabilities"]) <= set(grants[p["name"]])
            and any(h in STEP_HOOKS for h in p["hooks"])
            for p in event.plugins
        )
