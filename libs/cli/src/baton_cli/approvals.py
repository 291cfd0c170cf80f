"""``baton approvals [show|approve|reject|edit]``: the approval inbox from the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from baton_cli.client import call, gateway_url
from baton_cli.errors import CliError


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None, **params: Any) -> Any:
    clean = {k: v for k, v in params.items() if v is not None}
    return call(method, gateway_url(args.url), path, body, clean or None)


def inbox(args: argparse.Namespace) -> int:
    items = _api(args, "GET", "/v1/approvals", status=args.status, execution=args.execution)[
        "items"
    ]
    if not items:
        print("no approvals" + (f" {args.status}" if args.status else ""))
        return 0
    for a in items:
        due = f"  due {a['deadline_at'][:19]}" if a.get("deadline_at") else ""
        print(f"{a['id']}  {a['status']:<9} {a['step_id']:<20} {a['tool']:<16} "
              f"exec {a['execution_id'][:8]}{due}")  # fmt: skip
    return 0


def show(args: argparse.Namespace) -> int:
    a = _api(args, "GET", f"/v1/approvals/{args.approval}")
    if args.json:
        print(json.dumps(a, indent=2))
        return 0
    print(describe(a))
    return 0


def describe(a: dict[str, Any]) -> str:
    lines = [
        f"approval {a['id']}: {a['status']}",
        f"  step {a['step_id']} ({a['tool']}) of execution {a['execution_id']}",
    ]
    if a.get("message"):
        lines.append(f"  {a['message']}")
    who = ", ".join(a.get("approvers") or []) or "anyone who may approve"
    lines.append(f"  approvers: {who}; needs {a.get('min_approvals', 1)}")
    if a.get("deadline_at"):
        lines.append(f"  deadline: {a['deadline_at']}")
    lines.append("  input: " + json.dumps(a.get("input"), ensure_ascii=False)[:2000])
    for vote in a.get("votes") or []:
        lines.append(
            f"  {vote['decision']} by {vote['user']}"
            + (f": {vote['comment']}" if vote.get("comment") else "")
        )
    return "\n".join(lines)


def decide(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": args.decision, "comment": args.comment}
    if args.decision == "edit":
        try:
            body["input"] = json.loads(args.input)
        except (TypeError, ValueError) as exc:
            raise CliError(f"--input takes the new input as JSON: {exc}") from None
    result = _api(args, "POST", f"/v1/approvals/{args.approval}/decision", body)
    print(f"{args.decision}: {result['detail']}")
    return 0


def offer_decision(url: str, data: dict[str, Any]) -> None:
    """``baton run`` on a terminal: show the gate and decide right there (or leave it open)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f"  waiting for approval {data.get('approval_id')} (baton approvals show …)")
        return
    approval_id = data.get("approval_id")
    try:
        current = call("GET", url, f"/v1/approvals/{approval_id}")
        if current.get("status") != "pending":
            return  # decided already (a replayed history, or someone was quicker)
    except CliError:
        pass  # not in the inbox yet: it is being opened
    print(f"\n  Step {data.get('step_id')} ({data.get('tool')}) waits for approval {approval_id}")
    if data.get("message"):
        print(f"  {data['message']}")
    print("  input: " + json.dumps(data.get("input"), ensure_ascii=False)[:2000])
    answer = input("  approve? [a]pprove / [r]eject / [s]kip (decide later): ").strip().lower()
    decision = {"a": "approve", "approve": "approve", "r": "reject", "reject": "reject"}.get(answer)
    if decision is None:
        return
    comment = input("  comment (optional): ").strip() or None
    try:
        call("POST", url, f"/v1/approvals/{approval_id}/decision",
              {"decision": decision, "comment": comment})  # fmt: skip
        print(f"  {decision}d")
    except CliError as exc:
        print(f"  not decided: {exc}")


def add_approval_commands(sub: Any) -> list[argparse.ArgumentParser]:
    p = sub.add_parser("approvals", help="approval gates: list, show, approve, reject, edit")
    p.add_argument(
        "--status", choices=["pending", "granted", "rejected", "cancelled"], default="pending"
    )
    p.add_argument("--execution", help="only this execution's gates")
    p.set_defaults(fn=inbox)
    actions = p.add_subparsers(dest="approval_action")
    show_p = actions.add_parser("show", help="what is asked, the input, the policy, the history")
    show_p.add_argument("approval")
    show_p.add_argument("--json", action="store_true")
    show_p.set_defaults(fn=show)
    made = [p, show_p]
    for decision in ("approve", "reject", "edit"):
        d = actions.add_parser(decision, help=f"{decision} a pending gate")
        d.add_argument("approval")
        d.add_argument("--comment", help="why (shown in the history and the audit)")
        if decision == "edit":
            d.add_argument("--input", required=True, help="the new input, as JSON")
        d.set_defaults(fn=decide, decision=decision)
        made.append(d)
    return made
