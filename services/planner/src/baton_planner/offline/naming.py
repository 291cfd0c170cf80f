"""Names and outputs of a plan's steps: readable step ids from a task's words, and which step
outputs the plan gives back."""

from __future__ import annotations

from typing import Any

from baton_common.catalogue import Catalogue, ToolSpec

from baton_planner.offline import words as w
from baton_planner.offline.filling import ref
from baton_planner.offline.matching import is_wait


def step_slug(text: str, tool: ToolSpec, item: str | None) -> str:
    """A short slug from verb + object: collect_api, summarise, save_summary, check_example."""
    verb = w.lead_verb(text) or ("check" if w.urls(text) else tool.name.split(".")[-1])
    obj = w.host(w.urls(item)[0]) if item and w.urls(item) else None
    if item and obj is None:
        obj = w.slug(item.split("/")[-1].split(".")[0])
    if obj is None:
        obj = _object_word(text, verb)
    return f"{verb}_{obj}" if obj else verb


def _object_word(text: str, verb: str) -> str | None:
    rest = w.FILE.sub(lambda m: m.group(0).split("/")[-1].split(".")[0], text)
    for url in w.URL.findall(rest):
        rest = rest.replace(url, w.host(url))
    found = w.WORD.findall(rest.lower())
    for word in found[1:] if found and found[0] == verb else found:
        if word not in w.STOP and word not in w.PRONOUNS and not word.isdigit() and word != verb:
            return word
    return None


def plan_outputs(steps: list[dict[str, Any]], catalogue: Catalogue) -> dict[str, str]:
    """The primary output of every step nothing else reads (waits excluded), and every text the
    plan makes (a summary saved to a file is still what the person wants to read). Steps that may
    be skipped are left out: a skipped step has no output (the executor lists what ran)."""
    needed = {d for s in steps for d in s["depends_on"]}
    maybe = _maybe_skipped(steps)
    found = {}
    for step in steps:
        if step["id"] in maybe:
            continue
        spec = catalogue.get(step["tool"])
        text = spec is not None and spec.primary_output == "text"
        if text or (step["id"] not in needed and not (spec and is_wait(spec))):
            found[step["id"]] = ref(step["id"], spec)
    return found


def _maybe_skipped(steps: list[dict[str, Any]]) -> set[str]:
    """Steps with a condition and every step after them."""
    found = {s["id"] for s in steps if s.get("when")}
    for step in steps:
        if found & set(step["depends_on"]):
            found.add(step["id"])
    return found
