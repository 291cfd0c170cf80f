"""``baton run --dry-run / --mock``: simulated executions from the command line.

The engine does the work (see ``baton_common.simulation``); this module turns the options into the
request's fields and prints the calls a simulation made or would have made.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from baton_cli.errors import CliError


def add_run_options(run: argparse.ArgumentParser) -> None:
    """The simulation options of ``baton run``."""
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="run without side effects: reads run, writes answer their simulated output, "
        "no approval is asked; lists every call",
    )
    run.add_argument(
        "--mock",
        metavar="PROFILE",
        help="a mock profile (YAML): tools or steps replaced by mocks (implies --dry-run)",
    )
    run.add_argument(
        "--simulate-reads",
        action="store_true",
        help="in a simulation, simulate read tools too (default: they run for real)",
    )


def simulation_body(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields for the options given (none for a real run)."""
    body: dict[str, Any] = {}
    if getattr(args, "mock", None):
        try:
            body["mock_profile"] = Path(args.mock).read_text()
        except OSError as exc:
            raise CliError(f"cannot read mock profile {args.mock}: {exc.strerror}") from None
    if getattr(args, "dry_run", False) or body:
        body["dry_run"] = True
        if getattr(args, "simulate_reads", False):
            body["dry_run_reads"] = "simulate"
    return body


def print_calls(view: dict[str, Any]) -> None:
    """A simulation's calls, one a line: what ran, what was simulated, mocked or served back."""
    sim = view.get("simulation")
    if not sim:
        return
    calls = sim.get("calls") or []
    print(
        f"\n{sim.get('mode', 'dry_run').replace('_', '-')}: {len(calls)} call(s), no side effects"
    )
    for call in calls:
        extra = ""
        if call.get("approval_skipped"):
            extra += f"  [approval not asked: {call['approval_skipped']}]"
        if call.get("unrecorded"):
            extra += f"  [{call['unrecorded']}]"
        kind = "" if call.get("kind") == "run" else f" ({call.get('kind')})"
        text = json.dumps(call.get("input"), ensure_ascii=False)
        text = text if len(text) <= 200 else text[:197] + "..."
        print(
            f"  {call['step_id']}#{call['attempt']}{kind} {call['tool']} "
            f"[{call['call']}] {text}{extra}"
        )
