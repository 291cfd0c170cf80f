"""``text.template`` and ``json.query``: pure data tools with no side effects."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from typing import Any

from baton_common.plans import ReferenceError_, lookup

from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.misc import catalogue_spec


class _SafeFormatter(string.Formatter):
    """``str.format`` syntax, but fields are looked up in the values, never as attributes."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Resolve ``a.b[0]`` by item access only, so ``{x.__class__}`` reaches nothing."""
        try:
            return lookup(kwargs, field_name), field_name
        except ReferenceError_:
            raise ToolError(
                f"text.template: no value for placeholder {{{field_name}}}", retryable=False
            ) from None

    def format_field(self, value: Any, format_spec: str) -> str:
        """Strings as they are, other values as JSON unless a format spec says otherwise."""
        if format_spec:
            return format(value, format_spec)
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class TextTemplate:
    """Fills ``{name}`` placeholders from ``values``."""

    spec = catalogue_spec("text.template")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Render the template; a missing value or bad syntax fails without retry."""
        template = input["template"]
        try:
            text = _SafeFormatter().vformat(template, (), input.get("values") or {})
        except (ValueError, TypeError, IndexError) as exc:
            # Malformed braces or a format spec that does not fit the value: retrying won't help.
            raise ToolError(f"text.template: {exc}", retryable=False) from exc
        return {"text": text}


class JsonQuery:
    """Picks a value out of JSON data by a path such as ``items[0].title``."""

    spec = catalogue_spec("json.query")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """The value at ``path``, or ``found: false`` when there is none."""
        try:
            return {"result": lookup(input["data"], input["path"]), "found": True}
        except ReferenceError_:
            return {"result": None, "found": False}
