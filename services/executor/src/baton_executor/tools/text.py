"""``text.template`` and ``json.query``: pure data tools with no side effects."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from baton_common.plans import ReferenceError_, lookup

from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.misc import catalogue_spec

MAX_FORMAT_NUMBER = 1000  # the largest width or precision a format spec may ask for
MAX_TEXT_CHARS = 1_000_000  # the longest text a template may render
_SPEC_NUMBERS = re.compile(r"\d+")


class _SafeFormatter(string.Formatter):
    """``str.format`` syntax, but fields are looked up in the values, never as attributes, and
    what a template can make is bounded: ``{x:>999999999}`` would be a gigabyte of blanks, and
    ``{x}`` a thousand times over a large value a thousand copies of it."""

    def __init__(self) -> None:
        self.rendered = 0

    def parse(self, format_string: str) -> Any:
        """Placeholders as ``str.format`` reads them; a spec built from values (``{x:{w}}``)
        is refused, so every width and precision is in the template for all to see."""
        for literal, field, spec, conversion in super().parse(format_string):
            if spec and ("{" in spec or "}" in spec):
                raise ToolError(
                    f"text.template: {{{field}:{spec}}}: a format spec cannot hold a placeholder",
                    retryable=False,
                )
            yield literal, field, spec, conversion

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
            _check_spec(format_spec)
            text = format(value, format_spec)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        self.rendered += len(text)
        if self.rendered > MAX_TEXT_CHARS:
            raise ToolError(
                f"text.template: the text would be longer than {MAX_TEXT_CHARS} characters",
                retryable=False,
            )
        return text


def _check_spec(spec: str) -> None:
    """No width or precision (any number in the spec) above ``MAX_FORMAT_NUMBER``."""
    for number in _SPEC_NUMBERS.findall(spec):
        if len(number) > 4 or int(number) > MAX_FORMAT_NUMBER:
            raise ToolError(
                f"text.template: format spec {spec!r}: widths and precisions are at most "
                f"{MAX_FORMAT_NUMBER}",
                retryable=False,
            )


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
