"""``baton context …`` (an execution's shared context, or the workspace's), ``baton cache clear`` (the smart cache
of read-only tools) and ``baton insights`` (what the planner learned), through the gateway."""

from __future__ import annotations

import argparse
import json
from typing import Any

from baton_cli.errors import CliError
from baton_cli.verbs import api as _api
from baton_cli.verbs import print_lines, print_reply, verb


def context(args: argparse.Namespace) -> int:
    """Show every key, one key, or write one (``--set JSON``); ``--workspace``: the workspace's
    context, where the first argument is the key."""
    if args.workspace:
        if args.key:
            raise CliError(
                "--workspace takes one KEY: baton context --workspace [KEY] [--set JSON]"
            )
        args.key, base = args.execution, "/v1/context"
    elif not args.execution:
        raise CliError("name an execution, or --workspace: baton context EXECUTION [KEY]")
    else:
        base = f"/v1/executions/{args.execution}/context"
    if args.delete:
        if not (args.workspace and args.key) or args.set is not None:
            raise CliError(
                "--delete takes a key of the workspace: baton context --workspace KEY --delete"
            )
        _api(args, "DELETE", f"{base}/{args.key}")
        print(f"deleted: {args.key} (the executor records it)")
        return 0
    if args.set is not None:
        if not args.key:
            raise CliError("--set needs a key: baton context EXECUTION|--workspace KEY --set JSON")
        try:
            value = json.loads(args.set)
        except json.JSONDecodeError as exc:
            raise CliError(f"--set: not JSON ({exc.msg})") from None
        _api(args, "PUT", f"{base}/{args.key}", {"value": value})
        print(f"written: {args.key} (the executor records its version)")
        return 0
    if args.key:
        entry = _api(args, "GET", f"{base}/{args.key}")
        print(json.dumps(entry, indent=2))
        return 0
    items = _api(args, "GET", base)["items"]
    return print_lines(list(items.items()), _context_line, "the context is empty")


def _context_line(item: tuple[str, dict[str, Any]]) -> str:
    key, entry = item
    value = json.dumps(entry["value"])
    return f"{key:<24} v{entry['version']:<3} {entry['written_by']:<16} {value[:100]}"


def cache_clear(args: argparse.Namespace) -> int:
    _api(args, "POST", "/v1/cache/clear", {"tool": args.tool})
    print(f"cache cleared: {args.tool or 'every tool'} (this workspace)")
    return 0


def insights(args: argparse.Namespace) -> int:
    return print_reply(args, _api(args, "GET", "/v1/insights"), render_insights)


def render_insights(data: dict[str, Any]) -> str:
    """What the planner learned, for a terminal: plan reuse, learned plans, tools, failures."""
    reuse = data["plan_reuse"]
    lines = [
        f"plan reuse: {reuse['hits']} hits, {reuse['misses']} misses since the planner started "
        f"({data['embedder']} embeddings, threshold {data['threshold']})",
        f"learned plans: {len(data['plan_templates'])}",
    ]
    for t in data["plan_templates"][-10:]:
        lines.append(f"  {t['request'][:70]:<70} {t['steps']} steps, worked {t['learned']}×")
    lines.append("tools (best first):")
    for t in data["tool_preference"]:
        rate = f"{t['success_rate']:.0%}" if t["success_rate"] is not None else "-"
        mean = f"mean {t['mean_ms'] or 0:.0f} ms"
        lines.append(
            f"  {t['tool']:<24} {t['runs']:>5} runs {rate:>5} ok  {mean}  cached {t['cached']}"
        )
    lines.append("failure patterns:" if data["failure_patterns"] else "failure patterns: none")
    for p in data["failure_patterns"]:
        lines.append(f"  {p['tool']}: {p['error_class']} ({p['count']}×) → {p['advice']}")
    return "\n".join(lines)


def add_agent_commands(sub: Any) -> list[argparse.ArgumentParser]:
    ctx = sub.add_parser(
        "context", help="an execution's shared context, or the workspace's: show or write keys"
    )
    ctx.add_argument("execution", nargs="?", help="the execution (the key, with --workspace)")
    ctx.add_argument("key", nargs="?")
    ctx.add_argument("-w", "--workspace", action="store_true", help="the workspace's context")
    ctx.add_argument("--set", metavar="JSON", help="write this JSON value under the key")
    ctx.add_argument("--delete", action="store_true", help="delete the workspace's key")
    ctx.set_defaults(fn=context)
    cache = sub.add_parser("cache", help="the smart cache of read-only tool results")
    csub = cache.add_subparsers(dest="action", required=True)
    clear = verb(csub, "clear", "forget cached results (all, or one tool's)", cache_clear)
    clear.add_argument("--tool", help="only this tool's results")
    says = "what the planner learned: plans, tools, failures"
    learned = verb(sub, "insights", says, insights, json=True)
    return [ctx, clear, learned]
