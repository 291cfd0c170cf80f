"""``baton plans …``: saved plans. List, show (versions, routing, per-version figures), push a
plan file as a new version, diff two versions, promote, roll back, and split traffic (A/B)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from baton_cli.client import call, gateway_url
from baton_cli.errors import CliError


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None, **params: Any) -> Any:
    return call(method, gateway_url(args.url), path, body, params or None)


def listing(args: argparse.Namespace) -> int:
    items = _api(args, "GET", "/v1/plans")["items"]
    if not items:
        print("no saved plans (push one: baton plans push <name> plan.yaml)")
    for p in items:
        split = _split(p["routing"])
        print(
            f"{p['name'][:40]:<40} current v{p['current_version']}  latest v{p['latest_version']}"
            + (f"  A/B {split}" if split else "")
        )
    return 0


def show(args: argparse.Namespace) -> int:
    p = _api(args, "GET", f"/v1/plans/{args.name}")
    if args.json:
        print(json.dumps(p, indent=2))
        return 0
    print(f"plan {p['name']}: current version {p['current_version']}")
    if split := _split(p["routing"]):
        print(f"  A/B split: {split}")
    print(f"  {'ver':>4}  {'runs':>5} {'success':>8} {'p50 ms':>8} {'calls':>6}  author, message")
    for v in p["versions"]:
        f = v["figures"]
        rate = f"{f['success_rate'] * 100:.0f}%" if f["success_rate"] is not None else "—"
        p50 = f"{f['p50_ms']:.0f}" if f["p50_ms"] is not None else "—"
        mark = "*" if v["version"] == p["current_version"] else " "
        print(
            f" {mark}v{v['version']:<3}  {f['executions']:>5} {rate:>8} {p50:>8} {f['tool_calls']:>6}"
            f"  {v['author'] or '—'}: {v['message'] or ''}  ({v['created_at'][:19]})"
        )
    return 0


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
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(render_diff(d))
    return 0


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
    made = [top, actions.add_parser("list", help="the workspace's saved plans")]
    made[-1].set_defaults(fn=listing)
    s = actions.add_parser("show", help="versions, routing and per-version figures")
    s.add_argument("name")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=show)
    p = actions.add_parser("push", help="save a plan file (YAML or JSON) as a new version")
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("-m", "--message", help="why this version")
    p.add_argument("--promote", action="store_true", help="make it current at once")
    p.set_defaults(fn=push)
    d = actions.add_parser("diff", help="what changed between two versions")
    d.add_argument("name")
    d.add_argument("a", type=int, metavar="FROM")
    d.add_argument("b", type=int, metavar="TO")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=diff)
    pr = actions.add_parser("promote", help="make a version current (ends an A/B split)")
    pr.add_argument("name")
    pr.add_argument("version", type=int)
    pr.add_argument(
        "--rehearse",
        type=int,
        metavar="N",
        help="first re-run the last N recorded executions against it; refuse on any divergence",
    )
    pr.set_defaults(fn=promote)
    rb = actions.add_parser("rollback", help="the version current before the last promotion")
    rb.add_argument("name")
    rb.set_defaults(fn=rollback)
    r = actions.add_parser("route", help="split new executions between versions: 1=70 2=30")
    r.add_argument("name")
    r.add_argument("split", nargs="*", metavar="VERSION=WEIGHT", help="none: end the split")
    r.add_argument("--sticky-key", help="an input whose value keeps a caller on one version")
    r.set_defaults(fn=route)
    return [*made, s, p, d, pr, rb, r]
