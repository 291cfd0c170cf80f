"""``baton stats``: the workspace's business metrics (``GET /v1/metrics/summary``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from baton_cli.client import call, gateway_url


def add_stats_commands(sub: Any) -> list[argparse.ArgumentParser]:
    stats = sub.add_parser("stats", help="the workspace's figures: executions, approvals, tools")
    stats.add_argument("--hours", type=float, default=24, help="window of the recent figures")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(fn=cmd_stats)
    return [stats]


def render(summary: dict[str, Any]) -> list[str]:
    t = summary["totals"]
    ex, ap = t["executions"], t["approvals"]
    rate = summary.get("success_rate")
    lines = [
        "executions   started {started}  succeeded {succeeded}  failed {failed}  "
        "cancelled {cancelled}".format(**ex),
        f"last {summary.get('hours', 24):g} h  finished {summary['finished']}"
        + (f", {rate:.1%} succeeded" if rate is not None else ""),
    ]
    for p in ex["by_plan"]:
        lines.append(
            f"  {p['plan'][:40]:<40} {p['started']:>6} started {p['succeeded']:>6} ok "
            f"{p['failed']:>5} failed {p['cancelled']:>5} cancelled"
        )
    mean = ap["mean_seconds_to_decision"]
    lines.append(
        f"approvals    {ap['decisions']} decided ({ap['granted']} granted, {ap['rejected']} "
        f"rejected)" + (f", {mean:.1f} s to decide on average" if mean is not None else "")
    )
    lines.append("tools")
    for tool in t["tools"]:
        rate = tool["success_rate"]
        lines.append(
            f"  {tool['tool']:<24} {tool['attempts']:>7} attempts  "
            f"{(rate or 0):>7.1%} ok  " + (f"{tool['mean_ms']:.0f} ms" if tool["mean_ms"] else "")
        )
    for m in t["llm"]:
        cost = m.get("cost_usd")
        lines.append(
            f"llm {m['model']:<24} {m['calls']} calls, {m['input_tokens']} tokens in, "
            f"{m['output_tokens']} out" + (f", ${cost:.4f}" if cost is not None else "")
        )
    lines.append(f"schedules    {t['schedules']['firings']} firings")
    if cache := t.get("cache"):
        share = f"{100 * cache['hit_ratio']:.1f}%"
        lines.append(f"cache        {cache['hits']} results served ({share} of step results)")
    return lines


def cmd_stats(args: argparse.Namespace) -> int:
    summary = call(
        "GET", gateway_url(args.url), "/v1/metrics/summary", params={"hours": args.hours}
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print("\n".join(render({**summary, "hours": args.hours})))
    return 0
