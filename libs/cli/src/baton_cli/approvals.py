"""``baton approvals [show|approve|reject|edit|answer]``: the approval inbox from the terminal
(gates on steps and plans, and the planner's questions, answered in words)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from baton_cli.client import call
from baton_cli.errors import CliError
from baton_cli.verbs import api as _api
from baton_cli.verbs import print_reply, verb


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
    return print_reply(args, _api(args, "GET", f"/v1/approvals/{args.approval}"), describe)


def describe(a: dict[str, Any]) -> str:
    lines = [
        f"approval {a['id']}: {a['status']}",
        f"  step {a['step_id']} ({a['tool']}) of execution {a['execution_id']}",
    ]
    if a.get("message"):
        lines.append(f"  {a['message']}")
    if a.get("kind") == "question":
        lines += question_lines(a.get("input") or {})
        if a.get("answer"):
            lines.append(f"  answer: {a['answer']}")
    who = ", ".join(a.get("approvers") or []) or "anyone who may approve"
    lines.append(f"  approvers: {who}; needs {a.get('min_approvals', 1)}")
    if a.get("deadline_at"):
        lines.append(f"  deadline: {a['deadline_at']}")
    lines.append("  input: " + json.dumps(a.get("input"), ensure_ascii=False)[:2000])
    if a.get("context"):  # what the tool that asked found (a calendar's conflicts)
        lines.append("  context: " + json.dumps(a["context"], ensure_ascii=False)[:2000])
    for vote in a.get("votes") or []:
        lines.append(
            f"  {vote['decision']} by {vote['user']}"
            + (f": {vote['comment']}" if vote.get("comment") else "")
        )
    return "\n".join(lines)


def question_lines(asked: dict[str, Any]) -> list[str]:
    """What the planner understood, what not, and the closest tools (a question's input)."""
    lines = [f"  request: {asked['request']}"] if asked.get("request") else []
    lines += [f"  understood: {x}" for x in asked.get("understood") or []]
    lines += [f"  not understood: {x}" for x in asked.get("not_understood") or []]
    for choice in asked.get("choices") or []:
        lines.append(f"  choice for {choice.get('task')!r}: {choice.get('tool')}: "
                     f"{(choice.get('description') or '')[:100]}")  # fmt: skip
    return lines


def decide(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": args.decision, "comment": args.comment}
    if args.decision == "answer":
        body["answer"] = args.answer
    if args.decision == "edit":
        body["input"] = _input_for_edit(args)
    result = _api(args, "POST", f"/v1/approvals/{args.approval}/decision", body)
    print(f"{args.decision}: {result['detail']}")
    return 0


def _input_for_edit(args: argparse.Namespace) -> dict[str, Any]:
    """``--input``'s JSON, else the gate's input edited in $VISUAL / $EDITOR."""
    if args.input is not None:
        return parse_input(args.input, "--input")
    if not editor():
        raise CliError("edit needs the new input: --input '{…}', or set $EDITOR to edit it there")
    gate = _api(args, "GET", f"/v1/approvals/{args.approval}")
    return parse_input(
        edit_in_editor(gate.get("edited_input") or gate["input"]), "the edited input"
    )


def parse_input(text: str, what: str) -> dict[str, Any]:
    """A new input: a JSON object, or a CliError saying what is wrong with it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object, like the input shown")
    return value


def editor() -> list[str]:
    """The user's editor command ($VISUAL, else $EDITOR), split like a shell would; [] if none."""
    command = os.environ.get("VISUAL") or os.environ.get("EDITOR") or ""
    try:
        return shlex.split(command)
    except ValueError as exc:
        raise CliError(f"cannot read the editor command {command!r}: {exc}") from None


def edit_in_editor(value: dict[str, Any]) -> str:
    """``value`` as indented JSON in a private temporary file, opened in the user's editor;
    what the file holds when the editor exits."""
    command = editor()
    # A folder of its own (0700): the input may be private, and editors write files beside it.
    with tempfile.TemporaryDirectory(prefix="baton-edit-") as folder:
        path = Path(folder) / "input.json"
        path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        try:
            done = subprocess.run([*command, str(path)], check=False)
        except OSError as exc:
            raise CliError(f"cannot start the editor {command[0]!r}: {exc}") from None
        if done.returncode != 0:
            raise CliError(f"the editor exited with {done.returncode}: nothing was decided")
        return path.read_text()


PROMPT = "  approve? [a]pprove / [r]eject / [e]dit the input / [s]kip (decide later): "
ANSWERS = {"a": "approve", "approve": "approve", "r": "reject", "reject": "reject",
           "e": "edit", "edit": "edit"}  # fmt: skip
DONE = {"approve": "approved", "reject": "rejected", "edit": "edited and approved"}


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
    if data.get("context"):
        print("  context: " + json.dumps(data["context"], ensure_ascii=False)[:2000])
    _decide_at_prompt(url, f"/v1/approvals/{approval_id}/decision", data.get("input") or {})


def offer_answer(url: str, data: dict[str, Any]) -> None:
    """``baton run`` on a terminal: the planner's question, answered right there (or later)."""
    approval_id = data.get("approval_id")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(f'  waiting for an answer: baton approvals answer {approval_id} "…"')
        return
    print(f"\n  {data.get('question')}")
    for line in question_lines(data):
        print(line)
    if data.get("suggestion"):
        print(f"  suggestion: {data['suggestion']}")
    path = f"/v1/approvals/{approval_id}/decision"
    while True:
        try:
            text = input("  your answer (empty: answer later): ").strip()
        except EOFError:
            return
        if not text:
            return
        try:
            call("POST", url, path, {"decision": "answer", "answer": text})
        except CliError as exc:  # not opened yet (404) is worth another try; the rest is final
            print(f"  not answered: {exc}")
            if str(exc).startswith("404"):
                continue
            return
        print("  answered: the planner plans again with it")
        return


def _decide_at_prompt(url: str, path: str, shown: dict[str, Any]) -> None:
    """Ask until decided or skipped: an edit the tool refuses (422) leaves the gate open, so the
    question comes again; any other refusal (409, 403) is final."""
    while (body := _ask(shown)) is not None:
        try:
            call("POST", url, path, body)
        except CliError as exc:
            print(f"  not decided: {exc}")
            if body["decision"] == "edit" and str(exc).startswith("422"):
                continue
            return
        print(f"  {DONE[body['decision']]}")
        return


def _ask(shown: dict[str, Any]) -> dict[str, Any] | None:
    """The decision typed at the prompt (with the edited input for ``edit``), or None to skip."""
    try:
        decision = ANSWERS.get(input(PROMPT).strip().lower())
        if decision is None:
            return None
        body: dict[str, Any] = {"decision": decision}
        if decision == "edit":
            body["input"] = _edited_at_prompt(shown)
        body["comment"] = input("  comment (optional): ").strip() or None
    except CliError as exc:  # a bad edit: nothing was sent, ask again
        print(f"  {exc}")
        return _ask(shown)
    except EOFError:  # no more input (Ctrl-D): the gate stays open
        return None
    return body


def _edited_at_prompt(shown: dict[str, Any]) -> dict[str, Any]:
    """The new input: edited in $VISUAL / $EDITOR when one is set, else typed as JSON."""
    if editor():
        return parse_input(edit_in_editor(shown), "the edited input")
    return parse_input(input("  new input (JSON on one line): "), "the new input")


def add_approval_commands(sub: Any) -> list[argparse.ArgumentParser]:
    p = sub.add_parser(
        "approvals", help="approval gates and questions: list, show, approve, reject, edit, answer"
    )
    p.add_argument(
        "--status",
        choices=["pending", "granted", "rejected", "cancelled", "answered"],
        default="pending",
    )
    p.add_argument("--execution", help="only this execution's gates")
    p.set_defaults(fn=inbox)
    actions = p.add_subparsers(dest="approval_action")
    says = "what is asked, the input, the policy, the history"
    made = [p, verb(actions, "show", says, show, "approval", json=True)]
    for decision in ("approve", "reject", "edit"):
        d = verb(
            actions, decision, f"{decision} a pending gate", decide, "approval", decision=decision
        )
        d.add_argument("--comment", help="why (shown in the history and the audit)")
        if decision == "edit":
            d.add_argument(
                "--input", help="the new input, as JSON (without it: the input opens in $EDITOR)"
            )
        made.append(d)
    a = actions.add_parser(
        "answer", help="answer the planner's question (a request it asked about)"
    )
    a.add_argument("approval")
    a.add_argument("answer", help="the answer in words, e.g. the unclear task said another way")
    a.add_argument("--comment", help="shown in the history and the audit")
    a.set_defaults(fn=decide, decision="answer")
    made.append(a)
    return made
