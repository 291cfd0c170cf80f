"""``baton workspaces | keys | members | policy | audit | whoami``: the API's access routes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from baton_cli.errors import CliError
from baton_cli.verbs import api as _api

ACCESS_COMMANDS = ("workspaces", "keys", "members", "policy", "audit", "whoami")
ROLES = ("owner", "admin", "operator", "approver", "viewer")


def _workspace(args: argparse.Namespace) -> str:
    """``--workspace``, else the calling key's own."""
    return str(args.workspace or _api(args, "GET", "/v1/whoami")["workspace_id"])


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c) or "").ljust(widths[c]) for c in columns))


def workspaces_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError(
            f"deleting workspace {args.workspace_id!r} removes all its data, archives "
            "included, for good: add --yes to go ahead"
        )
    done = _api(args, "DELETE", f"/v1/workspaces/{args.workspace_id}")
    if args.json:
        print(json.dumps(done, indent=2))
        return 0
    print(f"deleted workspace {done['id']}; removed:")
    for what, n in done["removed"].items():
        print(f"  {n:>8}  {what}")
    return 0


def whoami(args: argparse.Namespace) -> int:
    me = _api(args, "GET", "/v1/whoami")
    print(f"{me['name']} ({me['role']}) in workspace {me['workspace_id']}")
    return 0


def workspaces_create(args: argparse.Namespace) -> int:
    print(_api(args, "POST", "/v1/workspaces", {"name": args.name})["id"])
    return 0


def workspaces_list(args: argparse.Namespace) -> int:
    _table(_api(args, "GET", "/v1/workspaces")["items"], ["id", "name", "created_at"])
    return 0


def workspaces_show(args: argparse.Namespace) -> int:
    print(json.dumps(_api(args, "GET", f"/v1/workspaces/{_workspace(args)}"), indent=2))
    return 0


def keys_create(args: argparse.Namespace) -> int:
    body = {"role": args.role, "name": args.name, "expires_at": args.expires_at}
    made = _api(args, "POST", f"/v1/workspaces/{_workspace(args)}/keys", body)
    if args.quiet:
        print(made["key"])
        return 0
    print(f"key {made['id']} ({made['name']}, {made['role']} of {made['workspace_id']})")
    print(f"\n  {made['key']}\n\nKeep it now: it is shown once and stored only as a hash.")
    return 0


def keys_list(args: argparse.Namespace) -> int:
    rows = _api(args, "GET", f"/v1/workspaces/{_workspace(args)}/keys")["items"]
    _table(rows, ["id", "name", "role", "created_at", "expires_at", "revoked_at"])
    return 0


def keys_mint(_args: argparse.Namespace) -> int:
    from baton_common.workspaces import mint_key

    print(mint_key())
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    from baton_common.workspaces import TOKEN_KEY_ID, TOKEN_KEY_NAME

    key_id = str(TOKEN_KEY_ID) if args.key_id == TOKEN_KEY_NAME else args.key_id
    _api(args, "DELETE", f"/v1/keys/{key_id}", {"reason": args.reason} if args.reason else None)
    print(f"revoked {key_id}")
    return 0


def members_set(args: argparse.Namespace) -> int:
    path = f"/v1/workspaces/{_workspace(args)}/members/{args.user}"
    _api(args, "PUT", path, {"role": args.role})
    print(f"{args.user} is {args.role}")
    return 0


def members_remove(args: argparse.Namespace) -> int:
    _api(args, "DELETE", f"/v1/workspaces/{_workspace(args)}/members/{args.user}")
    print(f"removed {args.user}")
    return 0


def members_list(args: argparse.Namespace) -> int:
    _table(_api(args, "GET", f"/v1/workspaces/{_workspace(args)}")["members"], ["user", "role"])
    return 0


def policy_show(args: argparse.Namespace) -> int:
    print(json.dumps(_api(args, "GET", f"/v1/workspaces/{_workspace(args)}/policy"), indent=2))
    return 0


def policy_set(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text() if args.file else args.json
        body = json.loads(text) if text.strip().startswith("{") else _yaml(text)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the policy: {exc}") from None
    saved = _api(args, "PUT", f"/v1/workspaces/{_workspace(args)}/policy", body)
    print(json.dumps(saved, indent=2))
    return 0


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def audit(args: argparse.Namespace) -> int:
    rows = _api(args, "GET", "/v1/audit", limit=args.limit, actor=args.actor)["items"]
    return print_audit(rows, args.json)


def print_audit(rows: list[dict[str, Any]], as_json: bool) -> int:
    """Audit rows (live or archived), oldest first, or as JSON."""
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in reversed(rows):
        detail = json.dumps(r["detail"], ensure_ascii=False)[:100] if r["detail"] else ""
        print(
            f"{r['occurred_at'][:19]}  {r['actor'] or '':<28} {r['action']:<30} {r['target']}"
            f"  {detail}"
        )
    return 0


def add_access_commands(sub: Any) -> None:
    sub.add_parser("whoami", help="the calling key's workspace and role").set_defaults(fn=whoami)
    _workspaces(sub)
    _keys(sub)
    _members(sub)
    _policy(sub)
    a = sub.add_parser("audit", help="who did what, when, in this workspace (admin, owner)")
    a.add_argument("--limit", type=int, default=100)
    a.add_argument("--actor", help='only this actor, e.g. "ci-bot (operator)"')
    a.add_argument("--json", action="store_true")
    a.set_defaults(fn=audit)


def _group(sub: Any, name: str, help: str) -> Any:
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_action", required=True)


def _ws_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--workspace", help="default: the calling key's workspace")
    return p


def _workspaces(sub: Any) -> None:
    g = _group(sub, "workspaces", "create, list and delete workspaces")
    c = g.add_parser("create", help="a new workspace (owner of the default workspace)")
    c.add_argument("name")
    c.set_defaults(fn=workspaces_create)
    g.add_parser("list", help="workspaces you can see").set_defaults(fn=workspaces_list)
    _ws_arg(g.add_parser("show", help="a workspace, its members and policy")).set_defaults(
        fn=workspaces_show
    )
    d = g.add_parser("delete", help="remove a workspace and all its data, archives included")
    d.add_argument("workspace_id")
    d.add_argument("--yes", action="store_true", help="yes, remove it all for good")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=workspaces_delete)


def _keys(sub: Any) -> None:
    g = _group(sub, "keys", "API keys of a workspace")
    c = _ws_arg(g.add_parser("create", help="a new key, shown once"))
    c.add_argument("--role", required=True, choices=ROLES)
    c.add_argument("--name", help="who or what uses it (shown in the audit trail)")
    c.add_argument("--expires-at", help="ISO-8601 with a time zone, e.g. 2027-01-01T00:00:00Z")
    c.add_argument("--quiet", action="store_true", help="print only the key")
    c.set_defaults(fn=keys_create)
    _ws_arg(g.add_parser("list", help="the workspace's keys (never the secrets)")).set_defaults(
        fn=keys_list
    )
    g.add_parser(
        "mint", help="print a new key string, registered nowhere (for BATON_BOOTSTRAP_KEY)"
    ).set_defaults(fn=keys_mint, local=True)
    r = g.add_parser("revoke", help="stop a key working, at once")
    r.add_argument("key_id", help="the key's id, or 'api-token' (BATON_API_TOKEN)")
    r.add_argument("--reason")
    r.set_defaults(fn=keys_revoke)


def _members(sub: Any) -> None:
    g = _group(sub, "members", "people in a workspace and their roles")
    s = _ws_arg(g.add_parser("set", help="give a person a role"))
    s.add_argument("user")
    s.add_argument("role", choices=ROLES)
    s.set_defaults(fn=members_set)
    r = _ws_arg(g.add_parser("remove", help="remove a person"))
    r.add_argument("user")
    r.set_defaults(fn=members_remove)
    _ws_arg(g.add_parser("list", help="members and roles")).set_defaults(fn=members_list)


def _policy(sub: Any) -> None:
    g = _group(sub, "policy", "a workspace's tool allow/deny lists and quotas")
    _ws_arg(g.add_parser("show")).set_defaults(fn=policy_show)
    s = _ws_arg(g.add_parser("set", help="replace the policy (JSON or YAML)"))
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="a JSON or YAML file")
    src.add_argument("--json", help='inline JSON, e.g. \'{"tools_deny": ["http.request"]}\'')
    s.set_defaults(fn=policy_set)
