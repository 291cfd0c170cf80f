"""The McpServer aggregate, and how a server's listed tools become catalogue specs.

No I/O here: the registry (``registry.py``) reaches the server, this module decides what its
answer means. A tool's side-effect class comes from its annotations (``readOnlyHint`` → read,
``destructiveHint`` → critical, so an approval gate; anything else → write) unless the
workspace set one for it.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import jsonschema
from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.catalogue import SideEffect, ToolSpec
from baton_common.errors import Invalid

PREFIX = "mcp."
_TOOL_VIEW = {
    "name",
    "description",
    "side_effect",
    "input_schema",
    "output_schema",
}  # a tool as shown
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ANY_OBJECT: dict[str, Any] = {"type": "object"}


class BadServer(Invalid):
    """The server could not be used (unreachable, not MCP, a tool that does not check out)."""


def server_id(workspace_id: str, name: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"baton:mcp-server:{workspace_id}:{name}")


def tool_name(server: str, tool: str) -> str:
    return f"{PREFIX}{server}.{tool}"


class McpServer(Aggregate):
    """A registered MCP server of one workspace."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.workspace_id = ""
        self.registered: c.McpServerRegistered | None = None
        self.tools: list[dict[str, Any]] = []
        self.side_effects: dict[str, SideEffect] = {}
        self.removed = False

    @property
    def name(self) -> str:
        return self.registered.name if self.registered else ""

    def on_server_registered(self, event: c.McpServerRegistered) -> None:
        self.workspace_id, self.registered, self.removed = event.workspace_id, event, False
        self.tools, self.side_effects = list(event.tools), dict(event.side_effects)

    def on_tools_listed(self, event: c.McpToolsListed) -> None:
        self.tools = list(event.tools)

    def on_side_effect_set(self, event: c.McpSideEffectSet) -> None:
        if event.side_effect is None:
            self.side_effects.pop(event.tool, None)
        else:
            self.side_effects[event.tool] = event.side_effect

    def on_server_removed(self, event: c.McpServerRemoved) -> None:
        self.removed = True

    def specs(self) -> list[ToolSpec]:
        """Its tools as the catalogue offers them."""
        return [spec_of(self.name, t, self.side_effects.get(t["name"])) for t in self.tools]

    def view(self) -> dict[str, Any]:
        """What the API shows: secrets by name only."""
        r = self.registered
        assert r is not None
        return {
            "id": str(self.id),
            "name": r.name,
            "transport": r.transport,
            "command": r.command or None,
            "url": r.url,
            "env": r.env,
            "headers": r.headers,
            "secret_env": sorted(r.secret_env),
            "secret_headers": sorted(r.secret_headers),
            "tools": [_tool_view(s) for s in self.specs()],
            "side_effects": self.side_effects,
        }


def _tool_view(spec: ToolSpec) -> dict[str, Any]:
    return spec.model_dump(include=_TOOL_VIEW)


def side_effect_of(annotations: dict[str, Any] | None) -> SideEffect:
    """From the tool's hints: destructive wins over read-only (a tool that says both is
    treated as the more dangerous)."""
    hints = annotations or {}
    if hints.get("destructiveHint"):
        return "critical"
    if hints.get("readOnlyHint"):
        return "read"
    return "write"


def spec_of(server: str, tool: dict[str, Any], override: SideEffect | None = None) -> ToolSpec:
    """A listed tool (``checked_tools`` passed it) as a catalogue spec."""
    output = tool.get("outputSchema") or ANY_OBJECT
    return ToolSpec(
        name=tool_name(server, tool["name"]),
        description=(tool.get("description") or tool.get("title") or tool["name"]).strip(),
        input_schema=tool.get("inputSchema") or ANY_OBJECT,
        output_schema=output,
        side_effect=override or side_effect_of(tool.get("annotations")),
        keywords=tuple(re.split(r"[_\-]+", tool["name"].lower())),
        text_field=_text_field(tool.get("inputSchema") or {}),
        # A tool without an output schema answers its text content (see tool.py).
        primary_output=None if tool.get("outputSchema") else "text",
    )


def _text_field(schema: dict[str, Any]) -> str | None:
    """The one required string field, which the offline planner fills from a request's words."""
    properties = schema.get("properties") or {}
    required = [n for n in schema.get("required") or [] if isinstance(properties.get(n), dict)]
    strings = [n for n in required if properties[n].get("type") == "string"]
    return strings[0] if len(required) == 1 and strings else None


def checked_tools(server: str, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listed tools if every one can join the catalogue; else ``BadServer`` naming the tool
    and what is wrong (nothing is registered half)."""
    if not NAME.match(server):
        raise BadServer(f"name: {server!r} must be lower case letters, digits, - or _ (max 40)")
    seen: set[str] = set()
    for tool in listed:
        name = str(tool.get("name") or "")
        if not TOOL_NAME.match(name):
            raise BadServer(f"tool {name!r}: a tool name must be letters, digits, - or _")
        if name in seen:
            raise BadServer(f"tool {name!r}: listed twice")
        seen.add(name)
        for field in ("inputSchema", "outputSchema"):
            if (problem := schema_problem(tool.get(field), field == "inputSchema")) is not None:
                raise BadServer(f"tool {name!r}: {field} is not a valid JSON schema: {problem}")
    return listed


def schema_problem(schema: Any, required: bool) -> str | None:
    """Why ``schema`` cannot describe a tool's input or output, or None."""
    if schema is None:
        return "missing" if required else None
    if not isinstance(schema, dict):
        return f"a schema is an object, not {type(schema).__name__}"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "<root>"
        return f"{where}: {exc.message}"
    if schema.get("type", "object") != "object":
        return f"type must be object, not {schema.get('type')!r}"
    return None


SIDE_EFFECTS = ("read", "write", "critical")
