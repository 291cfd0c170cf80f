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

import httpx
from baton_common.embedded import EmbeddedError

OWNER_KEY_FILE = "owner.key"
DEMO_REQUEST = (
    "collect incident reports for api, billing and search, summarise them "
    "and save the summary to summary.md"
)
# The second demo request: the calendar service finds a slot, then books it (built-in calendar).
DEMO_CALENDAR_REQUEST = "find a 30 minute slot for ann and bob on thursday and book a review"


class CliError(Exception):
    """A failure to show as one clear line (exit code 2 unless said otherwise)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def data_dir() -> Path:
    return Path(os.environ.get("BATON_DATA_DIR", ".baton"))


def runtime_info() -> dict[str, Any]:
    path = data_dir() / "runtime.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def gateway_url(given: str | None) -> str:
    if given:
        return given.rstrip("/")
    if env := os.environ.get("BATON_URL"):
        return env.rstrip("/")
    if info := runtime_info().get("gateway"):
        return str(info)
    return f"http://127.0.0.1:{os.environ.get('BATON_HTTP_PORT', '8080')}"


def apply_runtime_env() -> None:
    """Commands that talk to the store directly find the embedded servers of ``baton up``."""
    info = runtime_info()
    if info.get("database_url"):
        os.environ.setdefault("DATABASE_URL", info["database_url"])
    if info.get("nats_url"):
        os.environ.setdefault("NATS_URL", info["nats_url"])
    if info.get("nats_tls_ca"):
        os.environ.setdefault("NATS_TLS_CA", info["nats_tls_ca"])


# --- commands ---------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from baton_cli.schedules import demo_schedule
    from baton_cli.up import Engine

    port = args.port or int(os.environ.get("BATON_HTTP_PORT", "8080"))
    engine = Engine(data_dir(), port)
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


def signin_link(url: str, key: str | None = None) -> str:
    """A one-time dashboard link (valid once, for 10 minutes): the gateway makes the code for
    the calling key, so the link never carries the key itself."""
    headers = {"Authorization": f"Bearer {key}"} if key else auth_headers()
    try:
        resp = httpx.post(url + "/v1/signin-codes", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the gateway at {url} ({exc}); is `baton up` running?"
        ) from None
    if resp.status_code != 201:
        raise CliError(f"no sign-in code: {resp.status_code} {resp.text[:300]}")
    return url + str(resp.json()["path"])


def _dashboard_link(engine: Any) -> str:
    """``baton up``'s printed link; a gateway that cannot make a code yet stops nothing."""
    try:
        return signin_link(engine.url, engine.owner_key())
    except CliError as exc:
        return f"{engine.url}/ (no sign-in link: {exc}; `baton dashboard` prints one)"


def cmd_dashboard(args: argparse.Namespace) -> int:
    print(signin_link(gateway_url(args.url)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from baton_common.settings import Settings
    from baton_common.telemetry import setup_logging

    settings = Settings()
    setup_logging(args.service, settings.log_level)
    runners = _runners()
    if args.service not in runners:
        raise CliError(f"unknown service {args.service!r}; one of: {', '.join(runners)}")
    _run_loop(runners[args.service].load()(settings))
    return 0


def _run_loop(main: Any) -> None:
    """uvloop where available (a faster event loop for the bus-heavy services), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if os.environ.get("BATON_EVENT_LOOP") == "asyncio":
        asyncio.run(main)
        return
    uvloop.run(main)


def _runners() -> dict[str, Any]:
    """The services installed: the ``baton.services`` entry points (a plugin adds its own)."""
    from importlib.metadata import entry_points

    return {e.name: e for e in entry_points(group="baton.services")}


def cmd_run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"inputs": _inputs(args.input)}
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
        data = _call("POST", url, "/v1/executions", body)
        print(data["id"])
        return 0
    return _run_and_follow(url, body, quiet=args.quiet)


def saved_ref(text: str) -> dict[str, Any]:
    from baton_common.contracts.plans import parse_plan_ref

    try:
        return parse_plan_ref(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _inputs(pairs: list[str] | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--input takes key=value, got {pair!r}")
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    return inputs


def _run_and_follow(url: str, body: dict[str, Any], *, quiet: bool) -> int:
    from baton_cli.render import Follower

    data = _call("POST", url, "/v1/executions", body)
    execution_id = data["id"]
    print(f"execution {execution_id}", flush=True)
    final = Follower(url, execution_id, quiet=quiet).follow()
    view = _call("GET", url, f"/v1/executions/{execution_id}")
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
    data = _call(
        "POST",
        gateway_url(args.url),
        "/v1/plans/draft",
        {"request": args.request, "inputs": _inputs(args.input)},
    )
    from baton_cli import planview

    print(planview.machine(data) if args.json else planview.readable(data))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if getattr(args, "reason", None) else None
    _call("POST", gateway_url(args.url), f"/v1/executions/{args.execution}/{args.command}", body)
    print(f"{args.command} accepted for {args.execution}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    view = _call("GET", gateway_url(args.url), f"/v1/executions/{args.execution}")
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    from baton_cli.render import render_view

    print(render_view(view))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
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
    from baton_projector.main import rebuild

    apply_runtime_env()
    stats = asyncio.run(rebuild(Settings()))
    print(
        f"rebuilt the read models from {stats['events']:.0f} events in {stats['seconds']:.2f}s "
        f"({stats['events_per_s']:,.0f} events/s)"
    )
    return 0


def cmd_deadletters(args: argparse.Namespace) -> int:
    from baton_cli.deadletters import deadletters, deadletters_api

    if not args.from_bus:
        return deadletters_api(gateway_url(args.url), args.consumer, replay=args.replay)
    apply_runtime_env()
    return asyncio.run(deadletters(args.consumer, replay=args.replay))


def api_key() -> str | None:
    """$BATON_API_KEY, else $BATON_API_TOKEN, else the owner key `baton up` saved."""
    for name in ("BATON_API_KEY", "BATON_API_TOKEN"):
        if key := os.environ.get(name):
            return key
    try:
        return (data_dir() / OWNER_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _call(
    method: str, url: str, path: str, body: Any = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        resp = httpx.request(
            method, url + path, json=body, params=params, headers=auth_headers(), timeout=60
        )
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the gateway at {url} ({exc}); is `baton up` running?"
        ) from None
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        if resp.status_code == 401 and api_key() is None:
            detail = f"{detail} (set BATON_API_KEY, or run `baton up` once to create an owner key)"
        raise CliError(f"{resp.status_code}: {detail}")
    return dict(resp.json()) if resp.content else {}


# --- parser -----------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="baton", description="Plan, run and watch durable AI workflows."
    )
    sub = p.add_subparsers(dest="command_name", required=True)

    up = sub.add_parser("up", help="run the whole engine in the foreground")
    up.add_argument("--port", type=int, help="gateway port (default $BATON_HTTP_PORT or 8080)")
    up.add_argument(
        "--demo", action="store_true", help="submit the demo request once the engine is ready"
    )
    up.add_argument("--exit-after-demo", action="store_true", help="stop the engine after the demo")
    up.set_defaults(fn=cmd_up)

    serve = sub.add_parser("serve", help="run one service (what containers run)")
    serve.add_argument(
        "service", help="one of the installed services: " + " | ".join(sorted(_runners()))
    )
    serve.set_defaults(fn=cmd_serve)

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

    status = sub.add_parser("status", help="show an execution's state")
    status.add_argument("execution")
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
    from baton_cli.calendar import add_calendar_commands
    from baton_cli.keys import add_secrets_commands
    from baton_cli.observability import add_observability_commands
    from baton_cli.plans import add_plan_commands
    from baton_cli.schedules import add_schedule_commands
    from baton_cli.tools import add_tool_commands
    from baton_cli.webhooks import add_webhook_commands

    add_access_commands(sub)
    approval_parsers = add_approval_commands(sub)
    calendar_parsers = add_calendar_commands(sub)
    schedule_parsers = add_schedule_commands(sub)
    plan_parsers = add_plan_commands(sub)
    obs_parsers = add_observability_commands(sub)
    add_webhook_commands(sub)
    add_secrets_commands(sub)
    tool_parsers = add_tool_commands(sub)
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
        *calendar_parsers,
        *schedule_parsers,
        *tool_parsers,
        *plan_parsers,
        *obs_parsers,
        rehearse,
        *agent_parsers,
    ):
        sp.add_argument(
            "--url", help="gateway URL (default: the running `baton up`, or $BATON_URL)"
        )
    return p


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
    args = parser().parse_args(argv)
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
