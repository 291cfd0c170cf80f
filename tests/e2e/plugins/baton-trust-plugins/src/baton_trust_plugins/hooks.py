"""The plugin ``nonet``: declares no capability at all, so its tool may not call out."""

from typing import Any

from baton_common.plugins import hookimpl

CAPABILITIES: tuple[str, ...] = ()


@hookimpl
def before_step(step: dict[str, Any]) -> None:
    """Watches steps (so the workspace's steps go to a worker, where it is imported)."""
