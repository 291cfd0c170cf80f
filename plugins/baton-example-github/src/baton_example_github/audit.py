"""The audit hook: a plan whose steps' inputs match the rule is vetoed, with the reason."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from baton_common.plugins import Veto, hookimpl

CAPABILITIES = ("network", "secrets")  # what the plugin's tool needs
ORDER = 10  # audit early
DEFAULT_RULE = r"(?i)\b(drop|delete|wipe)\b.*\bproduction\b"


def _rule() -> re.Pattern[str]:
    return re.compile(os.environ.get("BATON_GITHUB_AUDIT_DENY") or DEFAULT_RULE)


@hookimpl
def after_plan(plan: dict[str, Any], request: str) -> None:
    """Veto the plan when the request or any step's input matches the audit rule."""
    rule = _rule()
    if rule.search(request or ""):
        raise Veto(f"the request matches the audit rule {rule.pattern!r}")
    for step in plan.get("steps", []):
        if rule.search(json.dumps(step.get("input", {}))):
            raise Veto(f"step {step.get('id')!r} matches the audit rule {rule.pattern!r}")
