"""A structural diff of two plans: steps added, removed and renamed, and what changed in each
step that is in both (tool, input paths, dependencies, retry, approval, and the other fields).

Steps are matched by id first. A removed step and an added one are the same step renamed when
they call the same tool with mostly the same inputs; references to a renamed step
(``${steps.<id>…}``, ``depends_on``) then count as unchanged. Plans are compared with their
defaults filled in, so spelling out a default is no change.
"""

from __future__ import annotations

import re
from typing import Any

from baton_common.jsonvalues import map_strings
from baton_common.plans import Plan

RENAME_THRESHOLD = 0.7  # tool equal (0.4) plus at least half of the input values equal (0.3)
APPROVAL_FIELDS = ("requires_approval", "approval")
OWN_FIELDS = ("tool", "input", "depends_on", "retry", *APPROVAL_FIELDS)
PLAN_FIELDS = ("description", "outputs", "max_parallel", "approval")


def diff_plans(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``, as JSON (the CLI and the dashboard draw it)."""
    a, b = _steps(old), _steps(new)
    removed = [i for i in a if i not in b]
    added = [i for i in b if i not in a]
    renames = _match_renames(a, b, removed, added)
    removed = [i for i in removed if i not in renames]
    added = [i for i in added if i not in renames.values()]
    changed: list[dict[str, Any]] = []
    for old_id, new_id in [(i, i) for i in a if i in b] + list(renames.items()):
        if changes := _step_changes(a[old_id], b[new_id], renames):
            changed.append({"step": new_id, "was": old_id, "changes": changes})
    order = list(b)
    changed.sort(key=lambda change: order.index(change["step"]))
    renamed = [
        {"from": o, "to": n, "similarity": round(_similarity(a[o], b[n]), 2)}
        for o, n in renames.items()
    ]
    plan_changes = _field_changes("", _plan_fields(old), _plan_fields(new))
    return {
        "added": [{"step": i, "tool": b[i]["tool"]} for i in added],
        "removed": [{"step": i, "tool": a[i]["tool"]} for i in removed],
        "renamed": renamed,
        "changed": changed,
        "plan": plan_changes,
        "summary": {
            "added": len(added),
            "removed": len(removed),
            "renamed": len(renamed),
            "changed": len(changed),
            "unchanged": len(a) - len(removed) - len(changed),
        },
    }


def _steps(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    full = Plan.model_validate(plan)
    return {s.id: s.model_dump(mode="json") for s in full.steps}


def _plan_fields(plan: dict[str, Any]) -> dict[str, Any]:
    full = Plan.model_validate(plan).model_dump(mode="json")
    return {k: full.get(k) for k in PLAN_FIELDS}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"input.a.b": 1}``: the paths a change is reported at."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _similarity(x: dict[str, Any], y: dict[str, Any]) -> float:
    pairs_x = {(p, repr(v)) for p, v in _flatten(x["input"], "input").items()}
    pairs_y = {(p, repr(v)) for p, v in _flatten(y["input"], "input").items()}
    union = pairs_x | pairs_y
    inputs = len(pairs_x & pairs_y) / len(union) if union else 1.0
    return 0.4 * (x["tool"] == y["tool"]) + 0.6 * inputs


def _match_renames(
    a: dict[str, Any], b: dict[str, Any], removed: list[str], added: list[str]
) -> dict[str, str]:
    """Pair removed and added steps, most similar first, above the threshold."""
    scored = sorted(
        ((_similarity(a[o], b[n]), o, n) for o in removed for n in added),
        key=lambda t: (-t[0], removed.index(t[1]), added.index(t[2])),
    )
    renames: dict[str, str] = {}
    for score, o, n in scored:
        if score >= RENAME_THRESHOLD and o not in renames and n not in renames.values():
            renames[o] = n
    return renames


def _renamed(value: Any, renames: dict[str, str]) -> Any:
    """``value`` with references to renamed steps written with their new ids."""

    def renamed(text: str) -> str:
        for o, n in renames.items():
            text = re.sub(rf"\bsteps\.{re.escape(o)}\b", f"steps.{n}", text)
        return text

    return map_strings(value, renamed)


def _step_changes(
    x: dict[str, Any], y: dict[str, Any], renames: dict[str, str]
) -> list[dict[str, Any]]:
    x = {**_renamed(x, renames), "id": None}
    x["depends_on"] = [renames.get(d, d) for d in x["depends_on"]]
    changes: list[dict[str, Any]] = []
    if x["tool"] != y["tool"]:
        changes.append({"field": "tool", "path": "tool", "from": x["tool"], "to": y["tool"]})
    changes += _field_changes("input", _flatten(x["input"], ""), _flatten(y["input"], ""))
    if set(x["depends_on"]) != set(y["depends_on"]):
        changes.append(
            {
                "field": "depends_on",
                "path": "depends_on",
                "from": sorted(x["depends_on"]),
                "to": sorted(y["depends_on"]),
                "added": sorted(set(y["depends_on"]) - set(x["depends_on"])),
                "removed": sorted(set(x["depends_on"]) - set(y["depends_on"])),
            }
        )
    changes += _field_changes("retry", x["retry"], y["retry"])
    for name in APPROVAL_FIELDS:
        if x.get(name) != y.get(name):
            changes.append({"field": "approval", "path": name, "from": x[name], "to": y[name]})
    others = [k for k in y if k not in OWN_FIELDS and k != "id" and x.get(k) != y.get(k)]
    changes += [{"field": k, "path": k, "from": x.get(k), "to": y.get(k)} for k in others]
    return changes


def _field_changes(field: str, x: dict[str, Any], y: dict[str, Any]) -> list[dict[str, Any]]:
    """Per key of two flat mappings: a change where the values differ (absent is None)."""
    keys = list(dict.fromkeys([*x, *y]))
    return [
        {
            "field": field or k,
            "path": f"{field}.{k}" if field and k else (k or field),
            **_ft(x, y, k),
        }
        for k in keys
        if x.get(k) != y.get(k)
    ]


def _ft(x: dict[str, Any], y: dict[str, Any], k: str) -> dict[str, Any]:
    return {"from": x.get(k), "to": y.get(k)}
