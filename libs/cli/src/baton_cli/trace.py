"""``baton trace <execution>``: the execution's causal tree from its stored events, with the span
that recorded each one, for when no tracing back end runs.

Every event names the event that caused it (``causation_id``) and carries the trace context of
the span that emitted it (``traceparent``). A tool's result (``task.finished``) is not kept with
the execution, so a step's outcome hangs under the dispatch of the same attempt.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from baton_cli.client import call, gateway_url
from baton_cli.render import describe

SERVICE = {"execution.requested": "gateway", "plan": "planner", "approval": "hitl"}


def add_trace_commands(sub: Any) -> list[argparse.ArgumentParser]:
    trace = sub.add_parser("trace", help="print an execution's trace (cause → effect) from events")
    trace.add_argument("execution")
    trace.set_defaults(fn=cmd_trace)
    return [trace]


def service_of(event_type: str) -> str:
    return SERVICE.get(event_type) or SERVICE.get(event_type.split(".")[0]) or "executor"


def tree(events: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """Children of each event id (None: the roots), in time order."""
    ids = {e["event_id"] for e in events}
    dispatched: dict[tuple[Any, ...], str] = {}
    resolved: dict[str, str] = {}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for e in events:
        attempt = (e.get("step_id"), e.get("attempt"), e.get("kind", "run"))
        cause = e.get("causation_id")
        if cause not in ids:  # a task's result: under the attempt's dispatch, with its siblings
            missing = str(cause)
            cause = resolved.get(missing) or (dispatched.get(attempt) if e.get("step_id") else None)
            if missing and cause:
                resolved.setdefault(missing, cause)
        if e["type"] == "execution.step_dispatched":
            dispatched[attempt] = e["event_id"]
        children.setdefault(cause if cause in ids else None, []).append(e)
    return children


def label(e: dict[str, Any], start: datetime) -> str:
    at = (datetime.fromisoformat(e["occurred_at"]) - start).total_seconds() * 1000
    span = (e.get("traceparent") or "").split("-")
    where = f"{service_of(e['type'])}" + (f" span {span[2]}" if len(span) == 4 else "")
    detail = " ".join((describe(e["type"], e) or "").split())
    return f"{e['type']}  +{at:.1f} ms  [{where}]" + (f"  {detail}" if detail else "")


def render(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return []
    start = datetime.fromisoformat(events[0]["occurred_at"])
    children = tree(events)
    traces = {(e.get("traceparent") or "--").split("-")[1] for e in events} - {""}
    lines = [f"trace {', '.join(sorted(traces)) or '(none recorded)'}  ({len(events)} events)"]

    def walk(node: dict[str, Any], prefix: str, last: bool, top: bool) -> None:
        lines.append(("" if top else prefix + ("└─ " if last else "├─ ")) + label(node, start))
        kids = children.get(node["event_id"], [])
        inner = "" if top else prefix + ("   " if last else "│  ")
        for n, kid in enumerate(kids):
            walk(kid, inner, n == len(kids) - 1, False)

    for root in children.get(None, []):
        walk(root, "", True, True)
    return lines


def cmd_trace(args: argparse.Namespace) -> int:
    url = gateway_url(args.url)
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = call("GET", url, f"/v1/executions/{args.execution}/events", params={"after": after})
        events += [row["data"] for row in page["items"]]
        if len(page["items"]) < 1000:
            break
        after = page["items"][-1]["seq"]
    for line in render(events):
        print(line)
    return 0
