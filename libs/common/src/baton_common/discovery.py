"""Tool discovery: built-ins, installed plugins' entry points and agent files, as one catalogue.

A scan (at the executor's start, and on ``baton tools refresh``) finds what is there; when it
differs from the last catalogue on the stream it is published, signed, as
``tools.catalogue_changed``. Every
process follows that subject (``CatalogueFollower``): at start it reads the last one from the
stream, then applies each new one to ``DEFAULT_CATALOGUE`` in place. So the gateway's validation,
the planner and every worker replica use the same tools, and nothing restarts.

A broken source (a file that does not parse, a plugin that does not import, a name taken twice)
is listed with its origin and reason and left out; the rest of the catalogue still loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from nats.js.errors import NotFoundError

from baton_common import contracts as c
from baton_common import together
from baton_common.agentfiles import agents_dir, scan_agents
from baton_common.catalogue import DEFAULT_CATALOGUE, DEPLOYED_TOOLS, Catalogue, ToolSpec
from baton_common.control import control_key, refused, sign
from baton_common.followed import FOLLOWER
from baton_common.plugins import HOOKS, reload_plugins

log = logging.getLogger(__name__)

TOOLS_GROUP = "baton.tools"
PLUGINS_GROUP = "baton.plugins"
CATALOGUE_ID = uuid5(NAMESPACE_URL, "baton:catalogue")
BUILTIN_NAMES = frozenset(t.name for t in DEPLOYED_TOOLS)


def catalogue_subject(root: str) -> str:
    return f"{root}.{c.SYSTEM_WORKSPACE}.{c.CatalogueChanged.TYPE}"


def refresh_subject(root: str) -> str:
    """Core NATS request/reply (outside the event stream's subjects), queue ``tool-scanners``."""
    return f"{root}_rpc.tools.refresh"


@dataclass
class Scan:
    """What one scan found: discovered tools (not the built-ins), plugins and broken sources."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    plugins: list[dict[str, Any]] = field(default_factory=list)
    broken: list[dict[str, Any]] = field(default_factory=list)

    @property
    def digest(self) -> str:
        body = json.dumps([self.tools, self.plugins, self.broken], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def event(self, scanned_by: str, after_seq: int) -> c.CatalogueChanged:
        """The event; its id is fixed by the content and the stream position it follows, so two
        replicas that scan the same files at once publish one event (the server drops the copy)."""
        return c.CatalogueChanged(
            event_id=uuid5(NAMESPACE_URL, f"baton:catalogue:{self.digest}:{after_seq}"),
            workspace_id=c.SYSTEM_WORKSPACE,
            aggregate_id=CATALOGUE_ID,
            digest=self.digest,
            tools=self.tools,
            plugins=self.plugins,
            broken=self.broken,
            scanned_by=scanned_by,
        )

    def _add(self, spec: ToolSpec, origin: str, implementation: dict[str, Any]) -> None:
        taken = BUILTIN_NAMES | {t["spec"]["name"] for t in self.tools}
        if spec.name in taken:
            problem = {"origin": origin, "reason": f"tool name {spec.name!r} is already taken"}
            if origin.startswith("agents:"):
                problem["file"] = origin.removeprefix("agents:")
            self.broken.append(problem)
            return
        self.tools.append(
            {
                "spec": spec.model_dump(mode="json"),
                "origin": origin,
                "implementation": implementation,
            }
        )


def scan(folder: Path | None = None) -> Scan:
    """Find every tool and plugin now installed or declared; never raises for a bad source."""
    importlib.invalidate_caches()  # a package installed since the last scan is importable
    found = Scan()
    _scan_entry_points(found)
    _scan_agents(found, folder if folder is not None else agents_dir())
    _scan_plugins(found)
    return found


def _scan_entry_points(found: Scan) -> None:
    for ep in sorted(entry_points(group=TOOLS_GROUP), key=lambda e: e.name):
        origin = f"plugin:{_dist(ep)}"
        try:
            spec = load_tool(ep.value).spec
            if not isinstance(spec, ToolSpec):
                spec = ToolSpec.model_validate(spec)
        except (Exception, SystemExit) as exc:  # any import or shape error (even exit): reported
            found.broken.append({"origin": origin, "entry_point": ep.value, "reason": _why(exc)})
            continue
        found._add(spec, origin, {"entry_point": ep.value})


def _scan_agents(found: Scan, folder: Path) -> None:
    good, broken = scan_agents(folder)
    for path, reason in broken:
        found.broken.append({"origin": f"agents:{path}", "file": str(path), "reason": reason})
    for path, agent in good:
        origin = f"agents:{path}"
        impl = agent.implementation
        if impl.python and not _importable(impl.python):
            module = impl.python.split(":")[0]
            reason = f"implementation.python: module {module!r} is not installed"
            found.broken.append({"origin": origin, "file": str(path), "reason": reason})
            continue
        found._add(agent.spec(), origin, impl.model_dump(mode="json", exclude_none=True))


def local_tools(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    """The agent files in this process's own folder, by tool name. With ``installed_tools``,
    what a worker may build: never an implementation a message names (a catalogue event names
    tools)."""
    importlib.invalidate_caches()
    found = Scan()
    _scan_agents(found, folder if folder is not None else agents_dir())
    return {t["spec"]["name"]: t for t in found.tools}


def installed_tools() -> frozenset[str]:
    """The ``module:attr`` targets of the tool entry points installed in this environment, read
    from their metadata: nothing is imported until a step needs one of them."""
    return frozenset(ep.value for ep in entry_points(group=TOOLS_GROUP))


def _scan_plugins(found: Scan) -> None:
    for ep in sorted(entry_points(group=PLUGINS_GROUP), key=lambda e: e.name):
        try:
            plugin = ep.load()
            found.plugins.append(describe_plugin(ep.name, plugin, _dist(ep), ep.value))
        except (Exception, SystemExit) as exc:  # a plugin that exits on import is reported
            origin = f"plugin:{_dist(ep)}"
            found.broken.append({"origin": origin, "entry_point": ep.value, "reason": _why(exc)})


def describe_plugin(name: str, plugin: Any, package: str, entry: str) -> dict[str, Any]:
    """A plugin as the catalogue lists it: its hooks and the capabilities it needs."""
    return {
        "name": name,
        "package": package,
        "entry_point": entry,
        "description": (getattr(plugin, "__doc__", None) or "").strip().split("\n")[0],
        "capabilities": sorted(getattr(plugin, "CAPABILITIES", ()) or ()),
        "hooks": [h for h in HOOKS if callable(getattr(plugin, h, None))],
    }


def _dist(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ep.module


def _importable(target: str) -> bool:
    try:
        return importlib.util.find_spec(target.split(":")[0]) is not None
    except (ImportError, ValueError):
        return False


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def load_tool(target: str) -> Any:
    """The tool object at ``package.module:attr`` (a class or factory is called once)."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not hasattr(obj, "run") or isinstance(obj, type):
        obj = obj()
    return obj


class CatalogueFollower:
    """Keeps a process's catalogue equal to the newest ``tools.catalogue_changed``."""

    def __init__(self, bus: Any, catalogue: Catalogue = DEFAULT_CATALOGUE) -> None:
        self.bus = bus
        self.catalogue = catalogue
        self.current: c.CatalogueChanged | None = None
        self.last_seq = 0
        self._sub: Any = None
        self.key = control_key(bus.settings) if bus is not None else None

    async def start(self) -> None:
        """Listen first, then read the last one: nothing published in between is missed."""

        async def on_msg(msg: Any) -> None:
            with contextlib.suppress(Exception):
                self.apply(c.CatalogueChanged.model_validate_json(msg.data))

        self._sub = await self.bus.nc.subscribe(
            catalogue_subject(self.bus.settings.subject_root), cb=on_msg
        )
        try:
            await self.sync()
        except Exception as exc:  # the built-ins still work; the next event brings the rest
            log.warning("could not read the tool catalogue from the stream: %s", exc)

    async def sync(self) -> c.CatalogueChanged | None:
        """Read the last catalogue on the stream and apply it if newer than ours."""
        subject = catalogue_subject(self.bus.settings.subject_root)
        try:
            raw = await self.bus.js.get_last_msg(self.bus.settings.stream, subject)
        except NotFoundError:
            return self.current
        self.last_seq = max(self.last_seq, int(raw.seq or 0))
        if raw.data:
            self.apply(c.CatalogueChanged.model_validate_json(raw.data))
        return self.current

    def apply(self, event: c.CatalogueChanged) -> bool:
        """Use ``event``'s tools unless ours is newer or the same, or it is not the
        installation's (unsigned, or signed with another key); True when it changed."""
        if why := refused(event, self.key):
            log.warning("tool catalogue %s ignored: %s", event.event_id, why)
            return False
        now = self.current
        if now is not None and (
            now.event_id == event.event_id or now.occurred_at > event.occurred_at
        ):
            return False
        self.current = event
        self.catalogue.replace(specs_of(event))
        with contextlib.suppress(Exception):
            reload_plugins()  # a plugin installed since is loaded
        log.info("tool catalogue %s: %d discovered tools", event.digest, len(event.tools))
        return True

    async def publish(self, found: Scan, scanned_by: str, via: Any = None) -> c.CatalogueChanged:
        """Publish ``found`` unless the stream's last catalogue is the same; the one in force.
        ``via``: the publisher's bus when not the follower's (one process, several services:
        the follower may be on a bus whose key may not publish the catalogue)."""
        last = await self.sync()
        if last is not None and last.digest == found.digest:
            return last
        event = sign(found.event(scanned_by, self.last_seq), self.key)
        await (via or self.bus).publish([event])
        self.apply(event)
        return event

    async def keep_on_stream(self, via: Any = None) -> bool:
        """Publish the catalogue in force again when the stream no longer holds it (its age
        limit dropped it), so a process that starts later still finds it there; True if so.
        The same event: a follower that has it already changes nothing. ``via`` as in
        ``publish``."""
        if self.current is None:
            return False
        subject = catalogue_subject(self.bus.settings.subject_root)
        try:
            await self.bus.js.get_last_msg(self.bus.settings.stream, subject)
            return False
        except NotFoundError:
            await (via or self.bus).publish([self.current])
            log.info(
                "tool catalogue %s published again: the stream had dropped it", self.current.digest
            )
            return True

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


def specs_of(event: c.CatalogueChanged) -> list[ToolSpec]:
    """The built-ins, then every discovered tool that still reads as a spec here."""
    specs = list(DEPLOYED_TOOLS)  # the executor's own (context, messages) too
    for entry in event.tools:
        try:
            specs.append(ToolSpec.model_validate(entry["spec"]))
        except Exception as exc:
            log.warning("catalogue entry %s skipped: %s", entry.get("origin"), exc)
    return specs


async def follow_catalogue(bus: Any) -> CatalogueFollower:
    """Start this process's follower (once); every service calls it when it opens."""
    if FOLLOWER and isinstance(FOLLOWER[0], CatalogueFollower) and _shared(FOLLOWER[0], bus):
        return FOLLOWER[0]
    follower = CatalogueFollower(bus)
    try:
        await asyncio.wait_for(follower.start(), 10)
    except Exception as exc:  # the built-ins still work; the next catalogue event brings the rest
        log.warning("tool catalogue not followed from the start: %s", exc)
    FOLLOWER[:] = [follower]  # a process opens one bus; a test that opens more uses the last
    return follower


def _shared(follower: CatalogueFollower, bus: Any) -> bool:
    """One follower per process: its own bus's, or, when the process serves several services
    (``together``), the first service's while that bus is open (the catalogue is the process's)."""
    if follower.bus is bus:
        return True
    return together.GROUP.get() is not None and not follower.bus.nc.is_closed
