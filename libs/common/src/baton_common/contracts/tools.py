"""Tools and plugins: the catalogue every process shares, and hook failures on steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from baton_common.events import Event

Json = dict[str, Any]

# The catalogue belongs to the deployment, not to one workspace: its events go on this token.
SYSTEM_WORKSPACE = "system"


class CatalogueChanged(Event):
    """The tools a deployment offers, whole, after a scan found them different from before.

    Carries each tool's spec, origin and implementation and the sources that are broken (file or
    plugin, with the reason). Every process applies the newest signed one it has seen; at start, a
    process reads the last one from the stream. A worker builds a tool from its own environment
    and agents folder, never from what this event names.
    """

    TYPE = "tools.catalogue_changed"

    digest: str
    tools: list[Json] = Field(default_factory=list)
    broken: list[Json] = Field(default_factory=list)
    plugins: list[Json] = Field(default_factory=list)
    scanned_by: str = ""
    # HMAC-SHA256 by the installation's control key (control.py): readers ignore it without one.
    signature: str = ""


class StepHookFailed(Event):
    """A plugin's hook around a step raised or timed out; the step went on without it."""

    TYPE = "execution.step_hook_failed"

    step_id: str
    attempt: int
    plugin: str
    hook: str
    error: str
