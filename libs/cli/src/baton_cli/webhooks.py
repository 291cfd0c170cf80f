"""``baton webhooks …``: inbound endpoints, outbound subscriptions, the delivery log, and two
helpers: ``sign`` (the headers a sender would send, for curl) and ``test`` (a test event to a
subscriber, followed until it is delivered or dead-lettered)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton_cli.arguments import parse_inputs, saved_ref
from baton_cli.errors import CliError
from baton_cli.verbs import api, print_lines, print_reply, verb


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None, **params: Any) -> Any:
    return api(args, method, f"/v1/webhooks{path}", body, **params)


def _fail(message: str) -> Exception:
    return CliError(message)


def _list(args: argparse.Namespace, what: str, line: Callable[[Any], str], **params: Any) -> int:
    """``what`` (endpoints, subscriptions, deliveries), one line each."""
    return print_lines(_api(args, "GET", f"/{what}", **params)["items"], line, f"no {what}")


# --- endpoints ----------------------------------------------------------------------------------


def endpoints(args: argparse.Namespace) -> int:
    return _list(
        args, "endpoints", lambda e: f"{e['id']}  {e['name']:<20} {e['scheme']:<8} {e['url']}"
    )


def create_endpoint(args: argparse.Namespace) -> int:
    action: dict[str, Any] = {"inputs": parse_inputs(args.input)}
    if args.plan:
        action["plan"] = _plan_file(args.plan)
    elif args.saved:
        action["plan_ref"] = saved_ref(args.saved)
    elif args.request:
        action["request"] = args.request
    else:
        raise _fail("say what a delivery starts: --plan FILE, --saved NAME or --request '…'")
    body = {
        "name": args.name,
        "scheme": args.scheme,
        "action": action,
        "allow_unsigned": args.allow_unsigned or None,
        "secret": args.secret,
    }
    made = _api(args, "POST", "/endpoints", {k: v for k, v in body.items() if v is not None})
    return print_reply(
        args,
        made,
        lambda m: (
            f"endpoint {m['id']}\n  url:    {m['url']}\n  secret: {m['secret']}  (shown once)"
        ),
    )


def _plan_file(path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read plan file {path}: {exc}") from None


def endpoint_action(args: argparse.Namespace) -> int:
    if args.action == "show":
        print(json.dumps(_api(args, "GET", f"/endpoints/{args.id}"), indent=2))
    elif args.action == "rotate":
        made = _api(args, "POST", f"/endpoints/{args.id}/rotate", {})
        print(f"new secret: {made['secret']}  (shown once; the previous one works for a day)")
    else:
        _api(args, "DELETE", f"/endpoints/{args.id}")
        print(f"endpoint {args.id} deleted")
    return 0


# --- subscriptions ------------------------------------------------------------------------------


def subscriptions(args: argparse.Namespace) -> int:
    return _list(args, "subscriptions", _subscription_line)


def _subscription_line(s: dict[str, Any]) -> str:
    return f"{s['id']}  {s['status']:<8} {','.join(s['events']):<30} {s['url']}"


def create_subscription(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"url": args.target, "events": args.event or ["execution.*"]}
    if args.plan:
        body["plan"] = args.plan
    if args.secret:
        body["secret"] = args.secret
    if args.retry is not None:
        try:
            body["retry_schedule"] = [float(s) for s in args.retry.split(",") if s.strip()]
        except ValueError:
            raise _fail("--retry takes seconds, comma-separated (5,300,1800)") from None
    made = _api(args, "POST", "/subscriptions", body)
    return print_reply(
        args, made, lambda m: f"subscription {m['id']}\n  secret: {m['secret']}  (shown once)"
    )


def subscription_action(args: argparse.Namespace) -> int:
    if args.action == "delete":
        _api(args, "DELETE", f"/subscriptions/{args.id}")
        print(f"subscription {args.id} deleted")
        return 0
    view = _api(args, "POST", f"/subscriptions/{args.id}/{args.action}")
    print(f"subscription {args.id}: {view['status']}")
    return 0


def test(args: argparse.Namespace) -> int:
    """Send a test event and follow it: 0 when delivered, 1 when dead-lettered."""
    delivery = _api(args, "POST", f"/subscriptions/{args.subscription}/test")
    print(f"delivery {delivery['id']} (webhook-id {delivery['message_id']})", flush=True)
    deadline = time.monotonic() + args.wait
    while delivery["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.3)
        delivery = _api(args, "GET", f"/deliveries/{delivery['id']}")
    for a in delivery["attempts"]:
        print(f"  {_attempt(a)}")
    print(f"{delivery['status']}" + (f": {delivery['reason']}" if delivery.get("reason") else ""))
    return {"succeeded": 0, "dead": 1}.get(delivery["status"], 3)


def _attempt(a: dict[str, Any]) -> str:
    answer = a.get("status_code") or a.get("error")
    later = f"  next {a['next_at'][:19]}" if a.get("next_at") else ""
    return f"#{a['attempt']} {a['at'][:19]} {answer} {a['latency_ms']:.0f} ms{later}"


# --- deliveries ---------------------------------------------------------------------------------


def deliveries(args: argparse.Namespace) -> int:
    filters = {"subscription": args.subscription, "status": args.status}
    return _list(args, "deliveries", _delivery_line, **filters)


def _delivery_line(d: dict[str, Any]) -> str:
    last = _attempt(d["attempts"][-1]) if d["attempts"] else "not attempted yet"
    return f"{d['id']}  {d['status']:<9} {d['event_type']:<24} {last}"


def delivery_action(args: argparse.Namespace) -> int:
    if args.action == "show":
        return print_reply(args, _api(args, "GET", f"/deliveries/{args.id}"), _delivery)
    if args.id:
        d = _api(args, "POST", f"/deliveries/{args.id}/redeliver")
        print(f"delivery {d['id']}: sent again")
        return 0
    if not args.since:
        raise _fail("redeliver takes a delivery id, or --since TIME for every failed one")
    done = _api(
        args,
        "POST",
        "/deliveries/redeliver",
        {"since": args.since, "subscription": args.subscription},
    )
    print(f"{len(done['redelivered'])} deliveries sent again")
    return 0


def _delivery(d: dict[str, Any]) -> str:
    reason = f"; {d['reason']}" if d.get("reason") else ""
    lines = [
        f"delivery {d['id']}: {d['status']}  {d['event_type']} → {d['url']}",
        f"  webhook-id {d['message_id']}{reason}",
    ]
    lines += [f"  {_attempt(a)}  {a.get('response', '')[:200]!r}" for a in d["attempts"]]
    return "\n".join(lines)


# --- sign ---------------------------------------------------------------------------------------


def sign(args: argparse.Namespace) -> int:
    """The headers a sender of ``--scheme`` would send with this body, one per line."""
    body = _body(args.payload)
    now = int(time.time())
    if args.scheme == "github":
        digest = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-Hub-Signature-256": f"sha256={digest}",
            "X-GitHub-Delivery": args.id or str(uuid.uuid4()),
        }
    elif args.scheme == "stripe":
        mac = hmac.new(args.secret.encode(), f"{now}.".encode() + body, hashlib.sha256)
        headers = {"Stripe-Signature": f"t={now},v1={mac.hexdigest()}"}
    else:
        headers = _standard(args.secret, args.id or f"msg_{uuid.uuid4().hex}", now, body)
    for name, value in {**headers, "Content-Type": "application/json"}.items():
        print(f"{name}: {value}")
    return 0


def _standard(secret: str, msg_id: str, now: int, body: bytes) -> dict[str, str]:
    from datetime import UTC, datetime

    from standardwebhooks.webhooks import Webhook

    try:
        signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, UTC), body.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot sign: {exc} (a Standard Webhooks secret is whsec_<base64>)") from None
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}


def _body(payload: str) -> bytes:
    """``-`` for stdin, ``@file``, or the JSON itself; sent byte for byte as signed."""
    if payload == "-":
        return sys.stdin.buffer.read()
    if payload.startswith("@"):
        try:
            return Path(payload[1:]).read_bytes()
        except OSError as exc:
            raise _fail(f"cannot read {payload[1:]}: {exc.strerror}") from None
    return base64.b64decode(payload[4:]) if payload.startswith("b64:") else payload.encode()


# --- parser -------------------------------------------------------------------------------------


def add_webhook_commands(sub: Any) -> list[argparse.ArgumentParser]:
    top = sub.add_parser("webhooks", help="inbound endpoints, outbound subscriptions, deliveries")
    kinds = top.add_subparsers(dest="webhooks_kind", required=True)
    made = [*_endpoint_parsers(kinds), *_subscription_parsers(kinds), *_delivery_parsers(kinds)]
    s = kinds.add_parser("sign", help="print the signature headers for a payload (for curl -H)")
    s.add_argument("--secret", required=True)
    s.add_argument("--payload", required=True, help="the JSON body, @file, or - for stdin")
    s.add_argument("--scheme", choices=["standard", "github", "stripe"], default="standard")
    s.add_argument("--id", help="the delivery id (default: a new one)")
    s.set_defaults(fn=sign)
    t = kinds.add_parser("test", help="send a test event to a subscription and follow it")
    t.add_argument("subscription")
    t.add_argument("--wait", type=float, default=30.0, help="seconds to follow it (default 30)")
    t.set_defaults(fn=test)
    for parser in (*made, t):  # every command but sign talks to the gateway
        parser.add_argument("--url", help="gateway URL (default: the running `baton up`)")
    return [*made, t]


def _endpoint_parsers(kinds: Any) -> list[argparse.ArgumentParser]:
    p = kinds.add_parser("endpoints", help="inbound endpoints: list, create, show, rotate, delete")
    p.set_defaults(fn=endpoints)
    acts = p.add_subparsers(dest="action")
    c = acts.add_parser("create", help="a new endpoint: prints its URL and secret")
    c.add_argument("name")
    c.add_argument("--scheme", choices=["standard", "github", "stripe", "none"], default="standard")
    c.add_argument("--plan", help="the plan a delivery starts (YAML or JSON file)")
    c.add_argument("--saved", metavar="NAME[@VERSION]", help="or a saved plan (baton plans)")
    c.add_argument("--request", help="or the request in words")
    c.add_argument(
        "--input",
        action="append",
        metavar="KEY=VALUE",
        help="an input, may use ${payload.…} / ${headers.…} (repeatable)",
    )
    c.add_argument("--secret", help="the secret (default: a new one)")
    c.add_argument("--allow-unsigned", action="store_true", help="needed with --scheme none")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=create_endpoint)
    made = [p, c]
    for action in ("show", "rotate", "delete"):
        says = f"{action} an endpoint"
        made.append(verb(acts, action, says, endpoint_action, "id", json=True, action=action))
    return made


def _subscription_parsers(kinds: Any) -> list[argparse.ArgumentParser]:
    p = kinds.add_parser("subscriptions", help="outbound subscriptions: list, create, …")
    p.set_defaults(fn=subscriptions)
    acts = p.add_subparsers(dest="action")
    c = acts.add_parser("create", help="post matching events to a URL, signed")
    c.add_argument("target", metavar="URL")
    c.add_argument("--event", action="append", help="an event type or pattern (repeatable)")
    c.add_argument("--plan", help="only events of executions of this plan")
    c.add_argument("--secret")
    c.add_argument("--retry", help="seconds before each retry, comma-separated")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=create_subscription)
    made = [p, c]
    for action in ("enable", "disable", "delete"):
        says = f"{action} a subscription"
        made.append(verb(acts, action, says, subscription_action, "id", action=action))
    return made


def _delivery_parsers(kinds: Any) -> list[argparse.ArgumentParser]:
    p = kinds.add_parser("deliveries", help="the delivery log; show one; redeliver")
    p.add_argument("--subscription")
    p.add_argument("--status", choices=["pending", "succeeded", "dead"])
    p.set_defaults(fn=deliveries)
    acts = p.add_subparsers(dest="action")
    verb(
        acts, "show", "a delivery and each attempt", delivery_action, "id", json=True, action="show"
    )
    r = acts.add_parser("redeliver", help="send one again, or every failed one --since TIME")
    r.add_argument("id", nargs="?")
    r.add_argument("--since", help="ISO-8601 time with its zone")
    r.add_argument("--subscription")
    r.set_defaults(fn=delivery_action, action="redeliver")
    return [p, *acts.choices.values()]
