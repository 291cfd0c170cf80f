"""``baton replay <id> --rerun`` and ``baton rehearse``: recorded executions re-run in replay mode.

A re-run is an execution with ``replay_of`` (see ``baton_common.simulation``): calls matching the
recording get the recorded results back, others are simulated, nothing real is called. The
divergence report compares the two histories (``baton_common.divergence``). ``rehearse`` does it
for the last N recorded executions of a saved plan against one of its versions: a gate to pass
before ``baton plans promote``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from baton_cli.client import call, gateway_url
from baton_cli.errors import CliError

TERMINAL = ("succeeded", "failed", "cancelled")
SAVED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})@(?P<version>\d+|current)$")


def add_rerun_options(replay: argparse.ArgumentParser) -> None:
    """The re-run options of ``baton replay``."""
    replay.add_argument(
        "--rerun",
        action="store_true",
        help="re-execute it (against --plan, or its own plan) with its recorded tool outputs "
        "served back, and report where behaviour diverges (exit 1 if it does)",
    )
    replay.add_argument(
        "--plan", help="with --rerun: the changed plan, a YAML/JSON file or a saved NAME@VERSION"
    )
    replay.add_argument(
        "--timeout", type=float, default=300, help="with --rerun: seconds to wait for it"
    )


def add_rehearse_command(sub: Any) -> argparse.ArgumentParser:
    rehearse = sub.add_parser(
        "rehearse",
        help="re-run the last N recorded executions of a saved plan against one of its "
        "versions, recorded outputs served back; exit 1 if any diverges (a promotion gate)",
    )
    rehearse.add_argument("version", metavar="NAME@VERSION", help="e.g. billing@3")
    rehearse.add_argument("--last", type=int, default=5, help="how many recorded executions")
    rehearse.add_argument("--timeout", type=float, default=300, help="seconds per re-run")
    rehearse.add_argument("--json", action="store_true")
    rehearse.set_defaults(fn=cmd_rehearse)
    return rehearse


def rerun(args: argparse.Namespace, url: str) -> int:
    """Re-run a finished execution in replay mode and print the divergences."""
    view = call("GET", url, f"/v1/executions/{args.execution}")
    if view["status"] not in TERMINAL:
        raise CliError(f"execution {args.execution} is {view['status']}: re-run a finished one")
    plan = plan_fields(args.plan) if args.plan else {"plan": view["plan"]}
    against = f"plan {args.plan}" if args.plan else "its own plan"
    new_id, status, found = rerun_one(url, view, plan, args.timeout, against, args.json)
    if args.json:
        print(json.dumps({"rerun": new_id, "status": status, "divergences": found}, indent=2))
    else:
        _print(found, status)
    return 1 if found else 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    diverged = rehearse(gateway_url(args.url), args.version, args.last, args.timeout, args.json)
    return 1 if diverged else 0


def rehearse(url: str, version: str, last: int, timeout: float, as_json: bool = False) -> int:
    """Re-run the last recorded executions of a saved plan against a version; how many diverged."""
    match = SAVED.match(version)
    if not match:
        raise CliError(f"{version!r}: give a saved plan as NAME@VERSION (e.g. billing@3)")
    plan = plan_fields(version)
    recorded = _recorded(url, match["name"], last)
    if not recorded:
        raise CliError(f"no finished, recorded executions of plan {match['name']!r} to re-run")
    results = []
    for view in recorded:
        new_id, status, found = rerun_one(url, view, plan, timeout, version, True)
        results.append({"recorded": view["id"], "rerun": new_id, "status": status,
                        "divergences": found})  # fmt: skip
        if not as_json:
            mark = "✔" if not found else "✘"
            print(f"{mark} {view['id']}: {len(found) or 'no'} divergence(s), re-run {status}")
            _print(found, status, quiet=True)
    diverged = sum(1 for r in results if r["divergences"])
    if as_json:
        print(json.dumps({"version": version, "diverged": diverged, "runs": results}, indent=2))
    else:
        print(f"{version}: {len(results) - diverged} of {len(results)} re-runs as recorded")
    return diverged


def plan_fields(given: str) -> dict[str, Any]:
    """``{"plan": text}`` for a file, ``{"plan_ref": …}`` for a saved NAME@VERSION."""
    path = Path(given)
    if path.is_file():
        try:
            return {"plan": path.read_text()}
        except OSError as exc:
            raise CliError(f"cannot read plan file {given}: {exc.strerror}") from None
    if match := SAVED.match(given):
        ref: dict[str, Any] = {"name": match["name"]}
        if match["version"] != "current":
            ref["version"] = int(match["version"])
        return {"plan_ref": ref}
    raise CliError(f"{given!r} is neither a plan file nor a saved plan (NAME@VERSION)")


def rerun_one(
    url: str, view: dict[str, Any], plan: dict[str, Any], timeout: float, against: str, quiet: bool
) -> tuple[str, str, list[dict[str, Any]]]:
    """(re-run id, its status, divergences) of one recorded execution."""
    from baton_common.divergence import divergences

    from baton_cli.replay import history_from_api

    body = {**plan, "inputs": view.get("inputs") or {}, "replay_of": view["id"]}
    new_id = str(call("POST", url, "/v1/executions", body)["id"])
    print(f"re-run {new_id} of {view['id']} ({against})", file=sys.stderr if quiet else None)
    status = _wait(url, new_id, timeout)
    recorded = history_from_api(UUID(view["id"]), url)
    return new_id, status, divergences(recorded, _ended_history(url, new_id))


def _recorded(url: str, name: str, last: int) -> list[dict[str, Any]]:
    """The newest finished executions of a saved plan that were real runs (not simulations).
    The listing narrows to the plan's runs (``saved=``), so a busy workspace costs no more."""
    found: list[dict[str, Any]] = []
    before = None
    while len(found) < last:
        params: dict[str, Any] = {"limit": 100, "saved": name}
        if before:
            params["before"] = before
        page = call("GET", url, "/v1/executions", params=params)
        for row in page["items"]:
            if row["status"] not in TERMINAL:
                continue
            view = call("GET", url, f"/v1/executions/{row['id']}")
            ref = view.get("plan_ref") or {}
            if ref.get("name") == name and not view.get("simulation"):
                found.append(view)
                if len(found) == last:
                    break
        before = page.get("next_before")
        if not before:
            break
    return found


def _print(found: list[dict[str, Any]], status: str, quiet: bool = False) -> None:
    from baton_common.divergence import describe

    if not found and not quiet:
        print(f"no divergence: the re-run made the recorded calls and ended {status}")
    elif found:
        if not quiet:
            print(f"{len(found)} divergence(s):")
        for d in found:
            print(f"  - {describe(d)}")


def _wait(url: str, execution_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(call("GET", url, f"/v1/executions/{execution_id}")["status"])
        if status in TERMINAL:
            return status
        time.sleep(0.2)
    raise CliError(f"the re-run {execution_id} did not finish in {timeout:g}s", code=3)


def _ended_history(url: str, execution_id: str) -> list[Any]:
    """Its history up to its end (the view can be read a moment before the last event is)."""
    from baton_common.divergence import outcome

    from baton_cli.replay import history_from_api

    events: list[Any] = []
    for _ in range(50):
        events = history_from_api(UUID(execution_id), url)
        if outcome(events) is not None:
            return events
        time.sleep(0.1)
    return events
