"""The tool catalogue this process follows: the last ``tools.catalogue_changed`` its follower
applied, and what that event says about where each tool comes from.

The follower (``discovery.CatalogueFollower``) keeps it current; everything that asks which
catalogue is in force (a workspace's policy: does this tool need a plugin the workspace has not
enabled? a worker: which capabilities may a plugin's tool use? the tool listings) reads it here,
without the bus or the scan that the follower and discovery bring.
"""

from __future__ import annotations

from typing import Any, Protocol

from baton_common import contracts as c


class Following(Protocol):
    """This process's follower (``discovery.CatalogueFollower``), as the rest of it uses it."""

    bus: Any
    current: c.CatalogueChanged | None

    def apply(self, event: c.CatalogueChanged) -> bool: ...

    async def sync(self) -> c.CatalogueChanged | None: ...

    async def keep_on_stream(self, via: Any = None) -> bool: ...

    async def publish(self, found: Any, scanned_by: str, via: Any = None) -> c.CatalogueChanged: ...


FOLLOWER: list[Following] = []  # the process's follower, once started (for listings)


def current_catalogue() -> c.CatalogueChanged | None:
    """The catalogue in force here; None before the follower applied one (built-ins only)."""
    return FOLLOWER[0].current if FOLLOWER else None


def plugin_package(tool: str) -> str | None:
    """The distribution whose ``baton.tools`` entry point made ``tool``; None for a built-in or
    an agent file's tool."""
    event = current_catalogue()
    for entry in event.tools if event is not None else []:
        if entry["spec"]["name"] == tool and entry["origin"].startswith("plugin:"):
            return str(entry["origin"]).removeprefix("plugin:")
    return None


_PLUGIN_TOOLS: dict[str, dict[str, tuple[str, list[str]]]] = {}


def plugin_needed(tool: str) -> tuple[str, list[str]] | None:
    """The plugin (name, capabilities) a workspace must enable to use ``tool``: tools of a package
    that also installs a plugin need that plugin. None for every other tool."""
    event = current_catalogue()
    if event is None or not event.plugins:
        return None
    if event.digest not in _PLUGIN_TOOLS:
        by_package = {p["package"]: (p["name"], list(p["capabilities"])) for p in event.plugins}
        _PLUGIN_TOOLS.clear()
        _PLUGIN_TOOLS[event.digest] = {
            t["spec"]["name"]: by_package[t["origin"].removeprefix("plugin:")]
            for t in event.tools
            if t["origin"].removeprefix("plugin:") in by_package
        }
    return _PLUGIN_TOOLS[event.digest].get(tool)
