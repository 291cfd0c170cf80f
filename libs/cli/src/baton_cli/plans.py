"""``baton plans …``: saved plans. List, show (versions, routing, per-version figures), push a
plan file as a new version, diff two versions, promote, roll back, and split traffic (A/B)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from baton_cli.client import gateway_url
from baton_cli.errors import CliError
from baton_cli.verbs import api as _api
from baton_cli.verbs import print_lines, print_reply, verb


def listing(args: argparse.Namespace) -> int:
    items = _api(args, "GET", "/v1/plans")["items"]
    return print_lines(items, _line, "no saved plans (push one: baton plans push <name> plan.yaml)")


def _line(p: dict[str, Any]) -> str:
    split = _split(p["routing"])
    return (
        f"{p['name'][:40]:<40} current v{p['current_version']}  latest v{p['latest_version']}"
        + (f"  A/B {split}" if split else "")
    )


def show(args: argparse.Namespace) -> int:
    return print_reply(args, _api(args, "GET", f"/v1/plans/{args.name}"), render_plan)


def render_plan(p: dict[str, Any]) -> str:
    """A saved plan for a terminal: its routing, then one line per version with its figures."""
    lines = [f"plan {p['name']}: current version {p['current_version']}"]
    if split := _split(p["routing"]):
        lines.append(f"  A/B split: {split}")
    lines.append(
        f"  {'ver':>4}  {'runs':>5} {'success':>8} {'p50 ms':>8} {'calls':>6}  author, message"
    )
    for v in p["versions"]:
        f = v["figures"]
        rate = f"{f['success_rate'] * 100:.0f}%" if f["success_rate"] is not None else "—"
        p50 = f"{f['p50_ms']:.0f}" if f["p50_ms"] is not None else "—"
        mark = "*" if v["version"] == p["current_version"] else " "
        lines.append(
            f" {mark}v{v['version']:<3}  {f['executions']:>5} {rate:>8} {p50:>8} {f['tool_calls']:>6}"
            f"  {v['author'] or '—'}: {v['message'] or ''}  ({v['created_at'][:19]})"
        )
    return "\n".join(lines)


def push(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    body = {"plan": text, "message": args.message, "promote": args.promote}
    made = _api(args, "POST", f"/v1/plans/{args.name}/versions", body)
    if made["created"]:
        print(f"{args.name}: version {made['version']} saved; current version: {made['current']}")
    else:
        print(f"{args.name}: unchanged, the same as version {made['version']}")
    return 0


def diff(args: argparse.Namespace) -> int:
    d = _api(args, "GET", f"/v1/plans/{args.name}/diff", **{"from": args.a, "to": args.b})
    return print_reply(args, d, render_diff)


def render_diff(d: dict[str, Any]) -> str:
    """The diff for a terminal: one line per step added (+), removed (-), renamed (→) and
    changed (~), with the field-level changes under it."""
    return "\n".join([f"{d['name']}: version {d['from']} → {d['to']}", *diff_lines(d)])


def diff_lines(d: dict[str, Any]) -> list[str]:
    """A diff's steps added (+), removed (-), renamed (→) and changed (~), then its summary."""
    lines = [f"  + {a['step']} ({a['tool']})" for a in d["added"]]
    lines += [f"  - {r['step']} ({r['tool']})" for r in d["removed"]]
    lines += [f"  → {r['from']} → {r['to']} (renamed)" for r in d["renamed"]]
    for c in d["changed"]:
        was = f" (was {c['was']})" if c["was"] != c["step"] else ""
        lines.append(f"  ~ {c['step']}{was}")
        lines += [f"      {x['path']}: {_v(x['from'])} → {_v(x['to'])}" for x in c["changes"]]
    lines += [f"  ~ plan {x['path']}: {_v(x['from'])} → {_v(x['to'])}" for x in d["plan"]]
    s = d["summary"]
    lines.append(
        f"  {s['added']} added, {s['removed']} removed, {s['renamed']} renamed, "
        f"{s['changed']} changed, {s['unchanged']} unchanged"
    )
    return lines


def _v(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str | int) else str(value)


def promote(args: argparse.Namespace) -> int:
    if args.rehearse:  # the gate: recorded runs re-run against the version first (rerun.py)
        from baton_cli.rerun import rehearse

        ref = f"{args.name}@{args.version}"
        if rehearse(gateway_url(args.url), ref, args.rehearse, 300):
            raise CliError(f"not promoted: re-runs against {ref} diverged (see above)", code=1)
    p = _api(args, "POST", f"/v1/plans/{args.name}/promote", {"version": args.version})
    print(f"{p['name']}: current version: {p['current_version']}")
    return 0


def rollback(args: argparse.Namespace) -> int:
    p = _api(args, "POST", f"/v1/plans/{args.name}/rollback")
    print(f"{p['name']}: rolled back; current version: {p['current_version']}")
    return 0


def route(args: argparse.Namespace) -> int:
    split = []
    for part in args.split:
        version, _, weight = part.partition("=")
        if not (version.isdigit() and weight.isdigit()):
            raise CliError(f"{part!r}: give VERSION=WEIGHT, e.g. 1=70 2=30")
        split.append({"version": int(version), "weight": int(weight)})
    body = {"split": split, "sticky_key": args.sticky_key}
    p = _api(args, "PUT", f"/v1/plans/{args.name}/routing", body)
    print(f"{p['name']}: " + (f"A/B {_split(p['routing'])}" if split else "no split"))
    return 0


def _split(routing: dict[str, Any]) -> str:
    parts = " / ".join(f"v{s['version']} {s['weight']}%" for s in routing.get("split") or [])
    if parts and routing.get("sticky_key"):
        parts += f" (sticky per {routing['sticky_key']})"
    return parts


def add_plan_commands(sub: Any) -> list[argparse.ArgumentParser]:
    top = sub.add_parser(
        "plans", help="saved plans: list, show, push, diff, promote, rollback, route"
    )
    top.set_defaults(fn=listing)
    actions = top.add_subparsers(dest="plans_action")
    made = [top, verb(actions, "list", "the workspace's saved plans", listing)]
    s = verb(actions, "show", "versions, routing and per-version figures", show, "name", json=True)
    p = verb(
        actions, "push", "save a plan file (YAML or JSON) as a new version", push, "name", "file"
    )
    p.add_argument("-m", "--message", help="why this version")
    p.add_argument("--promote", action="store_true", help="make it current at once")
    d = verb(actions, "diff", "what changed between two versions", diff, "name")
    d.add_argument("a", type=int, metavar="FROM")
    d.add_argument("b", type=int, metavar="TO")
    d.add_argument("--json", action="store_true")
    pr = verb(actions, "promote", "make a version current (ends an A/B split)", promote, "name")
    pr.add_argument("version", type=int)
    pr.add_argument(
        "--rehearse",
        type=int,
        metavar="N",
        help="first re-run the last N recorded executions against it; refuse on any divergence",
    )
    rb = verb(
        actions, "rollback", "the version current before the last promotion", rollback, "name"
    )
    r = verb(actions, "route", "split new executions between versions: 1=70 2=30", route, "name")
    r.add_argument("split", nargs="*", metavar="VERSION=WEIGHT", help="none: end the split")
    r.add_argument("--sticky-key", help="an input whose value keeps a caller on one version")
    return [*made, s, p, d, pr, rb, r]
