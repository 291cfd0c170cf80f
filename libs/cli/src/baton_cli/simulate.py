"""``baton run --dry-run / --mock``: simulated executions from the command line.

The engine does the work (see ``baton_common.simulation``); this module turns the options into the
request's fields and prints the calls a simulation made or would have made.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID


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
    from baton_cli.main import CliError

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


# --- baton replay <id> --rerun -----------------------------------------------------------------


def add_rerun_options(replay: argparse.ArgumentParser) -> None:
    """The re-run options of ``baton replay``."""
    replay.add_argument(
        "--rerun",
        action="store_true",
        help="re-execute it (against --plan, or its own plan) with its recorded tool outputs "
        "served back, and report where behaviour diverges (exit 1 if it does)",
    )
    replay.add_argument("--plan", help="with --rerun: the changed plan (a YAML or JSON file)")
    replay.add_argument(
        "--timeout", type=float, default=300, help="with --rerun: seconds to wait for it"
    )


def rerun(args: argparse.Namespace, url: str) -> int:
    """Re-run a finished execution in replay mode and print the divergences."""
    from baton_common.divergence import describe, divergences

    from baton_cli.main import CliError, _call
    from baton_cli.replay import history_from_api

    view = _call("GET", url, f"/v1/executions/{args.execution}")
    if view["status"] not in TERMINAL:
        raise CliError(f"execution {args.execution} is {view['status']}: re-run a finished one")
    body = {"plan": _plan_text(args.plan) if args.plan else view["plan"]}
    body.update(inputs=view.get("inputs") or {}, replay_of=view["id"])
    new_id = _call("POST", url, "/v1/executions", body)["id"]
    against = f"plan {args.plan}" if args.plan else "its own plan"
    print(f"re-run {new_id} of {view['id']} ({against})", file=sys.stderr if args.json else None)
    status = _wait(url, new_id, args.timeout)
    recorded = history_from_api(UUID(view["id"]), url)
    again = _ended_history(url, new_id)
    found = divergences(recorded, again)
    if args.json:
        print(json.dumps({"rerun": new_id, "status": status, "divergences": found}, indent=2))
    elif not found:
        print(f"no divergence: the re-run made the recorded calls and ended {status}")
    else:
        print(f"{len(found)} divergence(s):")
        for d in found:
            print(f"  - {describe(d)}")
    return 1 if found else 0


TERMINAL = ("succeeded", "failed", "cancelled")


def _plan_text(path: str) -> str:
    from baton_cli.main import CliError

    try:
        return Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read plan file {path}: {exc.strerror}") from None


def _wait(url: str, execution_id: str, timeout: float) -> str:
    import time

    from baton_cli.main import CliError, _call

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(_call("GET", url, f"/v1/executions/{execution_id}")["status"])
        if status in TERMINAL:
            return status
        time.sleep(0.2)
    raise CliError(f"the re-run {execution_id} did not finish in {timeout:g}s", code=3)


def _ended_history(url: str, execution_id: str) -> list[Any]:
    """Its history up to its end (the view can be read a moment before the last event is)."""
    import time

    from baton_common.divergence import outcome

    from baton_cli.replay import history_from_api

    for _ in range(50):
        events = history_from_api(UUID(execution_id), url)
        if outcome(events) is not None:
            return events
        time.sleep(0.1)
    return events
