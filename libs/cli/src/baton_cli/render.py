"""Live progress in the terminal, from the gateway's SSE stream."""

from __future__ import annotations

import json
import time
from typing import Any

from baton_cli.client import StreamLost, stream_lines

ICONS = {
    "pending": "·",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✘",
    "skipped": "↷",
    "cancelled": "■",
    "retrying": "↻",
    "compensated": "↺",
}


class Follower:
    """Prints each step's state as it changes; returns the execution's final status."""

    def __init__(self, url: str, execution_id: str, *, quiet: bool = False) -> None:
        self.url, self.execution_id, self.quiet = url, execution_id, quiet
        self.last_id: str | None = None
        self.status = "unknown"

    def follow(self, timeout_s: float = 3600) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self._stream():
                    return self.status
            except StreamLost:
                time.sleep(0.5)  # the gateway restarted: resume from the last event seen
        raise TimeoutError("gave up following the execution")

    def _stream(self) -> bool:
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        path = f"/v1/executions/{self.execution_id}/stream"
        with stream_lines(self.url, path, headers=headers, read_timeout_s=60) as lines:
            event, data = "", ""
            for line in lines:
                if line.startswith("id:"):
                    self.last_id = line[3:].strip()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and event:
                    if self._show(event, json.loads(data or "{}")):
                        return True
                    event, data = "", ""
        return False

    def _show(self, event: str, data: dict[str, Any]) -> bool:
        if event == "end":
            self.status = data.get("status") or self.status
            return True
        line = describe(event, data.get("data", {}))
        if line and not self.quiet:
            print(line, flush=True)
        if event == "execution.approval_requested" and not self.quiet:
            from baton_cli.approvals import offer_decision

            offer_decision(self.url, data.get("data", {}))
        if event == "plan.question_asked" and not self.quiet:
            from baton_cli.approvals import offer_answer

            offer_answer(self.url, data.get("data", {}))
        return False


def describe(event_type: str, e: dict[str, Any]) -> str | None:
    """One line for an event worth showing a person, or None."""
    step = f"{e.get('step_id', ''):<22}"
    kind = e.get("kind", "run")
    match event_type:
        case "execution.requested" if e.get("plan"):
            steps = e["plan"]["steps"]
            return f"  plan (direct): {len(steps)} steps — " + ", ".join(s["id"] for s in steps)
        case "plan.proposed":
            steps = e["plan"]["steps"]
            return f"  plan ({e['planner']}): {len(steps)} steps — " + ", ".join(
                s["id"] for s in steps
            )
        case "plan.failed":
            return f"  ✘ planning failed: {e['reason']}"
        case "plan.question_asked":
            return f"  ? the planner asks (question {e['approval_id']}, round {e['round']})"
        case "approval.answered":
            return f"  ✎ answered: {e.get('answer', '')[:120]}"
        case "execution.step_dispatched":
            verb = "compensating" if kind == "compensate" else "running"
            return f"  ▶ {step} {verb:<12} {e['tool']} (attempt {e['attempt']})"
        case "execution.step_succeeded":
            verb = "compensated" if kind == "compensate" else "succeeded"
            ran = f"  {e['call']['tool']} in the executor" if e.get("call") else ""
            return f"  {ICONS[verb]} {step} {verb:<12} {e.get('duration_ms', 0):.0f} ms{ran}"
        case "execution.step_failed":
            then = (
                "will retry"
                if e.get("retry_at")
                else "trying alternative"
                if e.get("next_variant")
                else "gave up"
            )
            return f"  ✘ {step} failed       {e['error'][:120]} ({then})"
        case "execution.step_skipped":
            return f"  ↷ {step} skipped      {e['reason']}"
        case "execution.step_cancelled":
            return f"  ■ {step} cancelled"
        case "execution.paused" | "execution.resumed" | "execution.cancelling":
            return f"  … {event_type.split('.', 1)[1]}"
        case "execution.compensation_started":
            return f"  ↺ compensating: {', '.join(e['steps']) or 'nothing to undo'}"
        case "execution.approval_requested":
            return f"  ✋ {step} waits for approval {e['approval_id']}"
        case "approval.granted":
            by = "automatically" if e.get("automatic") else "by " + ", ".join(e.get("by") or [])
            edited = " (input edited)" if e.get("edited") else ""
            return f"  ✔ {step} approved {by}{edited}"
        case "approval.rejected":
            return f"  ✘ {step} rejected: {e.get('reason', '')[:120]}"
        case "approval.escalated":
            return f"  ⇧ {step} escalated to {', '.join(e.get('approvers') or [])}"
    return None


def render_view(view: dict[str, Any]) -> str:
    lines = [
        f"execution {view['id']}: {view['status']}" + (" (paused)" if view.get("paused") else "")
    ]
    if view.get("request"):
        lines.append(f"  request: {view['request']}")
    for step in (view.get("steps") or {}).values():
        after = f" ← {', '.join(step['depends_on'])}" if step.get("depends_on") else ""
        lines.append(
            f"  {ICONS.get(step['status'], '?')} {step['id']:<22} {step['status']:<10} "
            f"{step['tool']} ×{step['attempts']}{after}"
            + (" (cached)" if step.get("cached_from") else "")
        )
        if step.get("error") and step["status"] != "succeeded":
            lines.append(f"      {step['error'][:200]}")
    if view.get("error"):
        lines.append(f"  error: {view['error']}")
    if (question := view.get("question")) and question.get("status") == "pending":
        lines.append(f"  the planner asks: {question['question']}")
        lines.append(f'  answer it: baton approvals answer {question["id"]} "…"')
    for key, entry in (view.get("context") or {}).items():
        value = json.dumps(entry["value"])[:100]
        lines.append(f"  context {key} = {value} (v{entry['version']}, {entry['written_by']})")
    for key, entry in (view.get("workspace_context") or {}).items():  # what it wrote there
        value = json.dumps(entry["value"])[:100]
        lines.append(f"  workspace context {key} = {value} (v{entry['version']})")
    for m in view.get("messages") or []:
        to = f" → step {m['delivered_to']}" if m.get("delivered_to") else " (waiting)"
        lines.append(f"  message #{m['seq']} {m['type']} {m['from']} → {m['to']}{to}")
    return "\n".join(lines)


def output_text(value: Any) -> str:
    """An execution's output for a person: text as it is, a list of flat records (the calendar's
    slots, say) as a table, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    if rows := _records(value):
        return table(rows)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _records(value: Any) -> list[dict[str, Any]]:
    """``value`` when it is a non-empty list of objects whose values are all scalars, else []."""
    if not isinstance(value, list) or not value:
        return []
    flat = all(
        isinstance(row, dict) and not any(isinstance(v, dict | list) for v in row.values())
        for row in value
    )
    return value if flat else []


# Read first when present. The view's JSON comes from PostgreSQL's jsonb, which keeps an object's
# keys sorted by length, not as the tool wrote them: a slot would read end, score, start.
LEADING = ("id", "name", "start", "end")


def table(rows: list[dict[str, Any]], widest: int = 72) -> str:
    """Columns: ``LEADING`` ones, then the others as keys first appear; cells cut at ``widest``."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    columns = [k for k in LEADING if k in keys] + [k for k in keys if k not in LEADING]
    cells = [[_cell(row.get(col), widest) for col in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = [columns, ["─" * w for w in widths], *cells]
    return "\n".join(_row(line, widths) for line in lines)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _cell(value: Any, widest: int) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= widest else text[: widest - 1] + "…"
