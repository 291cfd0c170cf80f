"""What a delivery starts: an action's inputs filled in from the delivery's payload and headers."""

from __future__ import annotations

import re
from typing import Any

_REF = re.compile(r"\$\{(payload|headers)((?:\.[^.}]+)*)\}")


def _lookup(root: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(root, dict):
            root = root.get(part)
        elif isinstance(root, list) and part.isdigit() and int(part) < len(root):
            root = root[int(part)]
        else:
            return None
    return root


def map_inputs(template: Any, payload: Any, headers: dict[str, str]) -> Any:
    """``${payload.a.b}`` and ``${headers.x-name}`` filled in: a whole-string reference keeps
    the value's JSON type, one inside text is formatted into it; a missing one is null."""
    if isinstance(template, dict):
        return {k: map_inputs(v, payload, headers) for k, v in template.items()}
    if isinstance(template, list):
        return [map_inputs(v, payload, headers) for v in template]
    if not isinstance(template, str):
        return template
    roots = {"payload": payload, "headers": headers}
    whole = _REF.fullmatch(template)
    if whole:
        return _lookup(roots[whole.group(1)], whole.group(2))

    def text(m: re.Match[str]) -> str:
        value = _lookup(roots[m.group(1)], m.group(2))
        return "" if value is None else str(value)

    return _REF.sub(text, template)
