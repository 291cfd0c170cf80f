"""Plugins: Python packages whose hooks run around plans and steps (through ``pluggy``).

A plugin is an entry point in the group ``baton.plugins`` naming a module or object with hook
functions (any of ``HOOKS``), ``CAPABILITIES`` (what it needs: ``network``, ``files``,
``secrets``) and optionally ``ORDER`` (lower runs first; then by name). A workspace runs a
plugin's hooks only when its policy enables the plugin and grants every capability it declares.
A process imports a plugin only when a workspace it serves enables it: installed is not loaded
(the catalogue's scan, which must import everything to describe it, runs in a child process).

Each hook call runs in a thread with a timeout (``BATON_HOOK_TIMEOUT``, 5 s): a hook that raises
or hangs becomes an ``Outcome`` with the error, and the caller reports it (on the step, on the
plan) and goes on. A thread that hangs cannot be killed in Python; it is left behind in a pool of
its own, so tool calls never wait for it, and a plugin with ``MAX_STUCK`` calls still running is
skipped (reported) until one returns, so one plugin's hangs never starve the others.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

log = logging.getLogger(__name__)

PROJECT = "baton"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
HOOKS = (
    "before_plan",
    "after_plan",
    "before_step",
    "after_step",
    "on_step_failure",
    "on_execution_end",
)
CAPABILITIES = ("network", "files", "secrets")
DEFAULT_TIMEOUT_S = 5.0
# A plugin with this many calls still running (hung past their timeout) is skipped until one
# returns: its hangs never take every thread of the pool from the other plugins.
MAX_STUCK = 4


class Veto(Exception):
    """Raised by ``after_plan`` to refuse a plan; the message is the reason people see."""


class HookSpecs:
    """The hooks a plugin may implement (keyword arguments; a hook may take any subset)."""

    @hookspec
    def before_plan(self, request: str, inputs: dict[str, Any], workspace_id: str) -> None:
        """A request is about to be planned."""

    @hookspec
    def after_plan(
        self, plan: dict[str, Any], request: str, workspace_id: str
    ) -> dict[str, Any] | None:
        """A plan was made: return an amended plan, None to keep it, or raise ``Veto(reason)``."""

    @hookspec
    def before_step(self, step: dict[str, Any], log: Any) -> None:
        """A step's attempt is about to call its tool (``step``: execution, step, tool, input;
        ``log``: the step's live log, ``log.info("…")``)."""

    @hookspec
    def after_step(self, step: dict[str, Any], output: Any, log: Any) -> None:
        """A step's attempt succeeded with ``output``."""

    @hookspec
    def on_step_failure(self, step: dict[str, Any], error: str, log: Any) -> None:
        """A step's attempt failed with ``error``."""

    @hookspec
    def on_execution_end(self, execution_id: str, status: str, workspace_id: str) -> None:
        """An execution finished (succeeded, failed or cancelled)."""


@dataclass
class Outcome:
    """One hook call of one plugin: its result, or why it has none."""

    plugin: str
    hook: str
    result: Any = None
    error: str | None = None
    veto: str | None = None


def hook_timeout() -> float:
    return float(os.environ.get("BATON_HOOK_TIMEOUT") or DEFAULT_TIMEOUT_S)


class PluginHost:
    """The installed plugins of this process, imported only once a workspace enables them, and
    hook calls for one workspace at a time."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s if timeout_s is not None else hook_timeout()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="hook")
        self.stuck: dict[str, int] = {}  # plugin -> its calls whose threads have not returned
        self.reload()

    def reload(self) -> None:
        """Read (again) which ``baton.plugins`` entry points are installed, importing none: a
        plugin is imported the first time a workspace that enables it needs its hooks."""
        importlib.invalidate_caches()
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(HookSpecs)
        self.entries: dict[str, EntryPoint] = {
            ep.name: ep for ep in entry_points(group="baton.plugins")
        }
        self.broken: dict[str, str] = {}
        self.capabilities: dict[str, frozenset[str]] = {}
        self.order: dict[str, tuple[int, str]] = {}
        self.pm = pm

    def names(self) -> list[str]:
        """The installed plugins (imported or not)."""
        return sorted(self.entries)

    def loaded(self) -> list[str]:
        """The plugins this process has imported: only those some workspace enabled."""
        return sorted(self.capabilities)

    def _ensure(self, plugin: str) -> bool:
        """Import ``plugin`` once (a failure is kept in ``broken``); True when it is usable."""
        if plugin in self.capabilities:
            return True
        ep = self.entries.get(plugin)
        if ep is None or plugin in self.broken:
            return False
        try:
            loaded = ep.load()
            self.pm.register(loaded, name=plugin)
        except (Exception, SystemExit) as exc:  # a plugin that exits on import is just broken
            self.broken[plugin] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s not loaded: %s", plugin, exc)
            return False
        self.capabilities[plugin] = frozenset(getattr(loaded, "CAPABILITIES", ()) or ())
        self.order[plugin] = (int(getattr(loaded, "ORDER", 100)), plugin)
        return True

    def runs_in(self, plugin: str, grants: dict[str, list[str]]) -> bool:
        """Whether a workspace whose policy says ``grants`` runs ``plugin``'s hooks (a plugin the
        workspace does not enable is never imported to find out)."""
        if plugin not in grants or not self._ensure(plugin):
            return False
        return self.capabilities[plugin] <= set(grants[plugin])

    def _impls(self, hook: str, grants: dict[str, list[str]]) -> list[Any]:
        running = {p for p in grants if self.runs_in(p, grants)}  # imports what is enabled
        caller = getattr(self.pm.hook, hook)
        impls = [i for i in caller.get_hookimpls() if i.plugin_name in running]
        return sorted(impls, key=lambda i: self.order.get(i.plugin_name, (100, i.plugin_name)))

    async def call(self, hook: str, grants: dict[str, list[str]], **kwargs: Any) -> list[Outcome]:
        """Call ``hook`` of each plugin the workspace runs, in order; never raises."""
        outcomes = []
        for impl in self._impls(hook, grants):
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            outcomes.append(await self._one(impl.plugin_name, hook, impl.function, args))
        return outcomes

    async def _one(self, plugin: str, hook: str, fn: Any, args: dict[str, Any]) -> Outcome:
        stuck = self.stuck.get(plugin, 0)
        if stuck >= MAX_STUCK:  # its threads are all still busy: do not queue behind them
            error = f"hook {hook} of plugin {plugin} skipped: {stuck} earlier calls still running"
            return Outcome(plugin, hook, error=error)
        try:
            if inspect.iscoroutinefunction(fn):
                result = await asyncio.wait_for(fn(**args), self.timeout_s)
            else:
                loop = asyncio.get_running_loop()
                future = loop.run_in_executor(self._pool, lambda: fn(**args))
                future.add_done_callback(lambda _f: self._unstuck(plugin))
                self.stuck[plugin] = stuck + 1  # until the thread returns, timed out or not
                result = await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except Veto as exc:
            return Outcome(plugin, hook, veto=str(exc) or "vetoed")
        except TimeoutError:
            error = f"hook {hook} of plugin {plugin} timed out after {self.timeout_s:g}s"
            return Outcome(plugin, hook, error=error)
        except (Exception, SystemExit) as exc:  # a hook that calls exit() is a failed hook
            return Outcome(plugin, hook, error=f"{type(exc).__name__}: {exc}"[:1000])
        return Outcome(plugin, hook, result=result)

    def _unstuck(self, plugin: str) -> None:
        self.stuck[plugin] = max(0, self.stuck.get(plugin, 0) - 1)


_HOST: list[PluginHost] = []


def plugin_host() -> PluginHost:
    """This process's host, made on first use and re-read when the catalogue changes."""
    if not _HOST:
        _HOST.append(PluginHost())
    return _HOST[0]


def reload_plugins() -> None:
    """A new catalogue may come with plugins installed since: the host (once made) reads the
    installed ones again, importing none (the catalogue's follower calls this)."""
    for host in _HOST:
        host.reload()
