"""The ``baton`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from baton_cli.arguments import parse_inputs, saved_ref
from baton_cli.errors import CliError
from baton_cli.serve import add_serve_parser, serve_parser

# The CLI's HTTP client (httpx) is imported by the commands that call the gateway, not at the
# top: ``baton serve`` (every service process) needs none of it (issue 32).

DEMO_REQUEST = (
    "collect incident reports for api, billing and search, summarise them "
    "and save the summary to summary.md"
)
# The second demo request: the calendar service finds a slot, then books it (built-in calendar).
DEMO_CALENDAR_REQUEST = "find a 30 minute slot for ann and bob on thursday and book a review"


# --- commands ---------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from baton_cli.client import data_dir
    from baton_cli.schedules import demo_schedule
    from baton_cli.up import Engine

    port = args.port or int(os.environ.get("BATON_HTTP_PORT", "8080"))
    if args.replicas:  # the supervisor and `baton chaos` read them from there
        os.environ["BATON_REPLICAS"] = ",".join(args.replicas)
    engine = Engine(data_dir(), port, one_process=args.one_process)
    stop = {"now": False, "supervising": False}

    def on_signal(_sig: int, _frame: Any) -> None:
        if not stop["supervising"]:  # starting, or following the demo: leave that at once
            raise KeyboardInterrupt
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("Starting Baton…", flush=True)
    try:
        engine.start()
        engine.wait_ready()
        print(
            f"Baton is up: API {engine.url}  (docs {engine.url}/docs); logs in {engine.data_dir / 'logs'}",
            flush=True,
        )
        print(
            f"Owner key of the default workspace: {engine.owner_key_path} "
            "(the CLI uses it; send it as `Authorization: Bearer <key>`)",
            flush=True,
        )
        print(f"Dashboard: {_dashboard_link(engine)}", flush=True)
        code = 0
        if args.demo:
            code = _run_and_follow(engine.url, {"request": DEMO_REQUEST}, quiet=False)
            calendar = {"request": DEMO_CALENDAR_REQUEST}
            code = _run_and_follow(engine.url, calendar, quiet=False) or code
            demo_schedule(engine.url)
            print(
                f"\nDashboard: {_dashboard_link(engine)}   ·   API docs: "
                f"{engine.url}/docs   ·   Ctrl-C stops the engine",
                flush=True,
            )
            if args.exit_after_demo:
                return code
        stop["supervising"] = True
        while not stop["now"]:
            engine.supervise()
            time.sleep(0.2)
        return 0
    finally:
        # A second Ctrl-C must not cut the shutdown short: services first, then the servers.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping Baton…", flush=True)
        engine.stop()
        print("Stopped.", flush=True)


def _dashboard_link(engine: Any) -> str:
    """``baton up``'s printed link; a gateway that cannot make a code yet stops nothing."""
    from baton_cli.client import signin_link

    try:
        return signin_link(engine.url, engine.owner_key())
    except CliError as exc:
        return f"{engine.url}/ (no sign-in link: {exc}; `baton dashboard` prints one)"


def cmd_dashboard(args: argparse.Namespace) -> int:
    from baton_cli.client import gateway_url, signin_link

    print(signin_link(gateway_url(args.url)))
    return 0


def _entry_point(group: str, name: str) -> Any:
    """What an installed service offers the CLI (its entry point): the CLI imports no service."""
    from importlib.metadata import entry_points

    found = entry_points(group=group, name=name)
    if not found:
        raise CliError(f"no {name!r} in entry point group {group!r}: is its service installed?")
    return next(iter(found)).load()


def cmd_run(args: argparse.Namespace) -> int:
    from baton_cli.client import call, gateway_url

    body: dict[str, Any] = {"inputs": parse_inputs(args.input)}
    if args.plan:
        try:
            body["plan"] = Path(args.plan).read_text()
        except OSError as exc:
            raise CliError(f"cannot read plan file {args.plan}: {exc.strerror}") from None
    elif args.saved:  # a saved plan: baton plans push … first
        body["plan_ref"] = saved_ref(args.saved)
    elif args.request:
        body["request"] = args.request
    else:
        raise CliError('say what to do (baton run "…") or give a plan (baton run --plan plan.yaml)')
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    from baton_cli.simulate import simulation_body

    body.update(simulation_body(args))
    url = gateway_url(args.url)
    if args.no_follow:
        data = call("POST", url, "/v1/executions", body)
        print(data["id"])
        return 0
    return _run_and_follow(url, body, quiet=args.quiet)


def _run_and_follow(url: str, body: dict[str, Any], *, quiet: bool) -> int:
    from baton_cli.client import call
    from baton_cli.render import Follower

    data = call("POST", url, "/v1/executions", body)
    execution_id = data["id"]
    print(f"execution {execution_id}", flush=True)
    final = Follower(url, execution_id, quiet=quiet).follow()
    view = call("GET", url, f"/v1/executions/{execution_id}")
    from baton_cli.simulate import print_calls

    print_calls(view)
    return _summary(view, final)


def _summary(view: dict[str, Any], status: str) -> int:
    if status == "succeeded":
        print(f"\n✔ succeeded in {_elapsed(view)}")
        from baton_cli.render import output_text

        for key, value in (view.get("outputs") or {}).items():
            text = output_text(value)
            print(f"\n{key}:\n  " + text[:4000].replace("\n", "\n  "))
        return 0
    print(f"\n✘ {status}: {view.get('error') or 'no reason recorded'}", file=sys.stderr)
    return 1 if status == "failed" else 3


def _elapsed(view: dict[str, Any]) -> str:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(view["created_at"])
        end = datetime.fromisoformat(view["finished_at"])
        return f"{(end - start).total_seconds():.2f}s"
    except (KeyError, TypeError, ValueError):
        return "?"


def cmd_plan(args: argparse.Namespace) -> int:
    from baton_cli import planview
    from baton_cli.client import call, gateway_url

    path = "/v1/plans/compare" if args.compare else "/v1/plans/draft"
    body = {"request": args.request, "inputs": parse_inputs(args.input)}
    data = call("POST", gateway_url(args.url), path, body)
    if args.json:
        print(
            json.dumps(data, indent=2, ensure_ascii=False)
            if args.compare
            else planview.machine(data)
        )
    else:
        print(planview.compared(data) if args.compare else planview.readable(data))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    from baton_cli.client import call, gateway_url

    body = {"reason": args.reason} if getattr(args, "reason", None) else None
    call("POST", gateway_url(args.url), f"/v1/executions/{args.execution}/{args.command}", body)
    print(f"{args.command} accepted for {args.execution}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from baton_cli.client import call, gateway_url

    if not args.execution:
        from baton_cli.health import print_readiness

        return print_readiness(args)
    view = call("GET", gateway_url(args.url), f"/v1/executions/{args.execution}")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    from baton_cli.render import render_view

    print(render_view(view))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from baton_cli.client import apply_runtime_env, gateway_url
    from baton_cli.replay import replay

    if args.rerun:
        from baton_cli.rerun import rerun

        return rerun(args, gateway_url(args.url))
    if args.from_store:
        apply_runtime_env()
    return replay(
        args.execution,
        at=args.at,
        as_json=args.json,
        url=None if args.from_store else gateway_url(args.url),
    )


def cmd_rebuild(args: argparse.Namespace) -> int:
    from baton_common.settings import Settings

    from baton_cli.client import apply_runtime_env

    apply_runtime_env()
    stats = asyncio.run(_entry_point("baton.rebuilds", "projections")(Settings()))
    print(
        f"rebuilt the read models from {stats['events']:.0f} events in {stats['seconds']:.2f}s "
        f"({stats['events_per_s']:,.0f} events/s)"
    )
    return 0


def cmd_deadletters(args: argparse.Namespace) -> int:
    from baton_cli.client import apply_runtime_env, gateway_url
    from baton_cli.deadletters import deadletters, deadletters_api

    if not args.from_bus:
        return deadletters_api(gateway_url(args.url), args.consumer, replay=args.replay)
    apply_runtime_env()
    return asyncio.run(deadletters(args.consumer, replay=args.replay))


# --- parser -----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton", description="Plan, run and watch durable AI workflows."
    )
    sub = p.add_subparsers(dest="command_name", required=True)

    add_up_parser(sub)

    add_serve_parser(sub)

    run = sub.add_parser("run", help="submit a request or a plan and follow it live")
    run.add_argument("request", nargs="?", help="what to do, in words")
    run.add_argument("--plan", help="a plan file (YAML or JSON) instead of words")
    run.add_argument("--saved", metavar="NAME[@VERSION]", help="a saved plan (baton plans)")
    run.add_argument("--input", action="append", metavar="KEY=VALUE", help="an input (repeatable)")
    run.add_argument(
        "--idempotency-key", help="submitting again with the same key returns the same execution"
    )
    run.add_argument("--no-follow", action="store_true", help="print the execution id and return")
    run.add_argument("--quiet", action="store_true", help="print only the result")
    from baton_cli.simulate import add_run_options

    add_run_options(run)
    run.set_defaults(fn=cmd_run)

    plan = sub.add_parser("plan", help="print the plan the planner would make, without running it")
    plan.add_argument("request")
    plan.add_argument("--input", action="append", metavar="KEY=VALUE")
    plan.add_argument("--json", action="store_true")
    plan.add_argument(
        "--compare",
        action="store_true",
        help="the offline planner's plan and the LLM planner's side by side, with their differences",
    )
    plan.set_defaults(fn=cmd_plan)

    for name in ("pause", "resume", "cancel"):
        cmd = sub.add_parser(name, help=f"{name} an execution")
        cmd.add_argument("execution")
        if name != "resume":
            cmd.add_argument("--reason")
        cmd.set_defaults(fn=cmd_command, command=name)

    dash = sub.add_parser(
        "dashboard", help="print a one-time sign-in link to the dashboard (valid 10 minutes)"
    )
    dash.add_argument("--url", help="gateway URL (default: the running `baton up`, or $BATON_URL)")
    dash.set_defaults(fn=cmd_dashboard)

    status = sub.add_parser(
        "status", help="show an execution's state; without one, every service's readiness"
    )
    status.add_argument("execution", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(fn=cmd_status)

    replay = sub.add_parser("replay", help="print an execution's event history from the stores")
    replay.add_argument("execution")
    replay.add_argument("--at", type=int, help="print the state as of event N (1-based)")
    replay.add_argument("--json", action="store_true")
    replay.add_argument(
        "--from-store",
        action="store_true",
        help="read every service's store directly (operators with database access), not the API",
    )
    from baton_cli.rerun import add_rerun_options

    add_rerun_options(replay)
    replay.set_defaults(fn=cmd_replay)

    projections = sub.add_parser("projections", help="read-model maintenance")
    psub = projections.add_subparsers(dest="action", required=True)
    psub.add_parser(
        "rebuild", help="drop the read models and rebuild them from the events"
    ).set_defaults(fn=cmd_rebuild)

    dead = sub.add_parser(
        "deadletters", help="list parked messages (with their reasons), or replay them"
    )
    dead.add_argument("--consumer", help="only those one consumer parked")
    dead.add_argument("--replay", action="store_true", help="send them back to their subjects")
    dead.add_argument(
        "--from-bus",
        action="store_true",
        help="every workspace's, straight from NATS (operators), not through the API",
    )
    dead.set_defaults(fn=cmd_deadletters)

    from baton_cli.access import add_access_commands
    from baton_cli.agents import add_agent_commands
    from baton_cli.approvals import add_approval_commands
    from baton_cli.archive import add_archive_commands
    from baton_cli.calendar import add_calendar_commands
    from baton_cli.keys import add_secrets_commands
    from baton_cli.mcp import add_mcp_commands
    from baton_cli.observability import add_observability_commands
    from baton_cli.plans import add_plan_commands
    from baton_cli.schedules import add_schedule_commands
    from baton_cli.tools import add_tool_commands
    from baton_cli.webhooks import add_webhook_commands

    add_access_commands(sub)
    approval_parsers = add_approval_commands(sub)
    archive_parsers = add_archive_commands(sub)
    calendar_parsers = add_calendar_commands(sub)
    schedule_parsers = add_schedule_commands(sub)
    plan_parsers = add_plan_commands(sub)
    obs_parsers = add_observability_commands(sub)
    add_webhook_commands(sub)
    add_secrets_commands(sub)
    tool_parsers = add_tool_commands(sub)
    mcp_parsers = add_mcp_commands(sub)
    from baton_cli.mcpserve import add_mcp_serve_command

    add_mcp_serve_command(subcommands(sub.choices["mcp"]))  # Baton as an MCP server
    from baton_cli.chaos import add_chaos_command
    from baton_cli.rerun import add_rehearse_command

    add_chaos_command(sub)
    from baton_cli.buskeys import add_buskeys_command

    add_buskeys_command(sub)
    rehearse = add_rehearse_command(sub)
    agent_parsers = add_agent_commands(sub)
    for sp in (
        run,
        plan,
        status,
        replay,
        dead,
        *[sub.choices[n] for n in ("pause", "resume", "cancel")],
        *access_parsers(sub),
        *approval_parsers,
        *archive_parsers,
        *calendar_parsers,
        *schedule_parsers,
        *tool_parsers,
        *mcp_parsers,
        *plan_parsers,
        *obs_parsers,
        rehearse,
        *agent_parsers,
    ):
        sp.add_argument(
            "--url", help="gateway URL (default: the running `baton up`, or $BATON_URL)"
        )
    return p


def add_up_parser(sub: Any) -> None:
    up = sub.add_parser("up", help="run the whole engine in the foreground")
    up.add_argument("--port", type=int, help="gateway port (default $BATON_HTTP_PORT or 8080)")
    up.add_argument(
        "--demo", action="store_true", help="submit the demo request once the engine is ready"
    )
    up.add_argument("--exit-after-demo", action="store_true", help="stop the engine after the demo")
    up.add_argument(
        "--one-process",
        action="store_true",
        help="every service in one process (less memory, for laptops and CI; one crash stops "
        "them all: not for production)",
    )
    up.add_argument(
        "--replicas",
        action="append",
        metavar="NAME=N",
        help="run N processes of a service (repeatable; default $BATON_REPLICAS)",
    )
    up.set_defaults(fn=cmd_up)


def up_parser() -> argparse.ArgumentParser:
    """``baton up`` alone (the full parser's ``up`` is the same)."""
    p = argparse.ArgumentParser(prog="baton")
    add_up_parser(p.add_subparsers(dest="command_name", required=True))
    return p


# Commands parsed alone: the full parser imports every subcommand (~50 MB), which a service
# process and ``baton up``'s supervisor, living as long as the engine, do not need (issue 32).
LEAN = {"serve": serve_parser, "up": up_parser}


def subcommands(parser: argparse.ArgumentParser) -> Any:
    """The subparsers action of a command group (to add a verb to a group made elsewhere)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def access_parsers(sub: Any) -> list[argparse.ArgumentParser]:
    from baton_cli.access import ACCESS_COMMANDS

    found = []
    for name in ACCESS_COMMANDS:
        top = sub.choices[name]
        actions = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
        subs = list(actions[0].choices.values()) if actions else [top]
        found += [p for p in subs if not p.get_default("local")]
    return found


def main(argv: list[str] | None = None) -> None:
    from baton_common.embedded import EmbeddedError

    argv = sys.argv[1:] if argv is None else argv
    args = LEAN.get(argv[0] if argv else "", parser)().parse_args(argv)
    try:
        code = args.fn(args)
    except CliError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        code = exc.code
    except EmbeddedError as exc:
        print(f"baton: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `baton … | head`: the reader left; not an error of ours
        sys.stderr.close()
        code = 0
    sys.exit(code)
