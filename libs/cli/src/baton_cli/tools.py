"""``baton tools``, ``baton agents`` and ``baton plugins``: the catalogue and its origins, a rescan,
the agent registry's figures, and the plugin marketplace (an index of packages, pip-installed)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# The index shipped in the repository (plugins/index.json); BATON_PLUGIN_INDEX points elsewhere.
DEFAULT_INDEX = Path(__file__).resolve().parents[4] / "plugins" / "index.json"


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    from baton_cli.main import _call, gateway_url

    return _call(method, gateway_url(getattr(args, "url", None)), path, body)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}ms"


def tools_list(args: argparse.Namespace) -> int:
    data = _api(args, "GET", "/v1/tools")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for t in data["tools"]:
        s = t["stats"]
        print(
            f"{t['name']:<28} {t['side_effect']:<8} {t['origin'] or '?':<40} "
            f"calls {s['calls']:<5} ok {_pct(s['success_rate']):>4}  p50 {_ms(s['p50_ms'])}"
        )
    for b in data["broken"]:
        print(f"BROKEN {b.get('file') or b['origin']}: {b['reason']}")
    return 0


def tools_show(args: argparse.Namespace) -> int:
    print(json.dumps(_api(args, "GET", f"/v1/tools/{args.name}"), indent=2))
    return 0


def tools_refresh(args: argparse.Namespace) -> int:
    data = _api(args, "POST", "/v1/tools/refresh", {})
    print(f"catalogue {data['digest']}: {data['tools']} tools")
    for b in data["broken"]:
        print(f"BROKEN {b.get('file') or b['origin']}: {b['reason']}")
    return 0


def agents_list(args: argparse.Namespace) -> int:
    if args.name:
        print(json.dumps(_api(args, "GET", f"/v1/agents/{args.name}"), indent=2))
        return 0
    rows = _api(args, "GET", "/v1/agents")["agents"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'agent':<28} {'calls':>6} {'ok':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'retries':>7}")
    for a in rows:
        print(
            f"{a['name']:<28} {a['calls']:>6} {_pct(a['success_rate']):>5} {_ms(a['p50_ms']):>8} "
            f"{_ms(a['p95_ms']):>8} {_ms(a['p99_ms']):>8} {a['retries']:>7}"
            + (f"  errors {a['error_classes']}" if a["error_classes"] else "")
        )
    return 0


# --- plugins: the index (local, no gateway needed) and the workspace's switches ----------------------


def index_path() -> Path:
    return Path(os.environ.get("BATON_PLUGIN_INDEX") or DEFAULT_INDEX)


def read_index() -> list[dict[str, Any]]:
    from baton_cli.main import CliError

    path = index_path()
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read the plugin index {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"the plugin index {path} is not JSON: {exc}") from None
    plugins = data.get("plugins") if isinstance(data, dict) else data
    if not isinstance(plugins, list):
        raise CliError(f"the plugin index {path} has no 'plugins' list")
    return [p for p in plugins if isinstance(p, dict) and p.get("name")]


def _entry(name: str) -> dict[str, Any]:
    from baton_cli.main import CliError

    found = next((p for p in read_index() if p["name"] == name), None)
    if found is None:
        raise CliError(f"no plugin {name!r} in the index {index_path()}; `baton plugins search`")
    return found


def plugins_search(args: argparse.Namespace) -> int:
    words = (args.words or "").lower()
    hits = [p for p in read_index() if words in json.dumps(p).lower()]
    for p in hits:
        print(f"{p['name']:<28} {p.get('version', ''):<8} {p.get('description', '')}")
    if not hits:
        print("no plugin matches")
    return 0


def plugins_info(args: argparse.Namespace) -> int:
    print(json.dumps(_entry(args.name), indent=2))
    return 0


def package_target(entry: dict[str, Any]) -> str:
    """What pip installs: a requirement, or a path relative to the index file."""
    package = str(entry.get("package") or "")
    if package.startswith((".", "/")):
        return str((index_path().parent / package).resolve())
    return package


def plugins_install(args: argparse.Namespace) -> int:
    from baton_cli.main import CliError

    entry = _entry(args.name)
    target = package_target(entry)
    if not target or (target.startswith("/") and not Path(target).exists()):
        raise CliError(f"plugin {args.name!r}: its package {entry.get('package')!r} is not there")
    # No build isolation: the environment's setuptools builds it (works offline).
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        target,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise CliError(f"installing {args.name!r} failed: {why[0]}")
    print(
        f"installed {args.name} ({target}); needs: {', '.join(entry.get('capabilities') or []) or 'nothing'}"
    )
    if not args.no_refresh:
        tools_refresh(args)
    return 0


def plugins_list(args: argparse.Namespace) -> int:
    for p in _api(args, "GET", "/v1/plugins")["plugins"]:
        state = (
            f"enabled ({', '.join(p['granted']) or 'no capabilities'})"
            if p["enabled"]
            else "disabled"
        )
        print(f"{p['name']:<28} {p['package']:<28} {state}  hooks: {', '.join(p['hooks'])}")
    return 0


def plugins_switch(args: argparse.Namespace) -> int:
    body = {"grant": args.grant.split(",") if getattr(args, "grant", None) else []}
    data = _api(
        args,
        "POST",
        f"/v1/plugins/{args.name}/{args.action}",
        body if args.action == "enable" else None,
    )
    print(f"{data['name']}: {'enabled' if data['enabled'] else 'disabled'}")
    return 0


def add_tool_commands(sub: Any) -> list[argparse.ArgumentParser]:
    made = []
    tools = sub.add_parser("tools", help="the tool catalogue: origins, schemas, figures")
    tools.add_argument("--json", action="store_true")
    tools.set_defaults(fn=tools_list)
    tsub = tools.add_subparsers(dest="tools_action")
    show = tsub.add_parser("show", help="one tool: spec, origin, figures")
    show.add_argument("name")
    show.set_defaults(fn=tools_show)
    refresh = tsub.add_parser("refresh", help="scan plugins and the agents folder again")
    refresh.set_defaults(fn=tools_refresh)
    agents = sub.add_parser("agents", help="the agent registry: calls, success, latency, errors")
    agents.add_argument("name", nargs="?")
    agents.add_argument("--json", action="store_true")
    agents.set_defaults(fn=agents_list)
    made += [tools, show, refresh, agents]
    plugins = sub.add_parser("plugins", help="plugins: search the index, install, enable…")
    psub = plugins.add_subparsers(dest="plugins_action", required=True)
    p = psub.add_parser("search", help="plugins in the index matching words")
    p.add_argument("words", nargs="?")
    p.set_defaults(fn=plugins_search)
    p = psub.add_parser("info", help="one plugin's index entry")
    p.add_argument("name")
    p.set_defaults(fn=plugins_info)
    p = psub.add_parser("install", help="pip-install a plugin from the index, then rescan")
    p.add_argument("name")
    p.add_argument("--no-refresh", action="store_true", help="do not ask the engine to rescan")
    p.set_defaults(fn=plugins_install)
    made.append(p)
    p = psub.add_parser("list", help="installed plugins and whether this workspace runs them")
    p.set_defaults(fn=plugins_list)
    made.append(p)
    for action in ("enable", "disable"):
        p = psub.add_parser(action, help=f"{action} a plugin's hooks in this workspace")
        p.add_argument("name")
        if action == "enable":
            p.add_argument("--grant", help="capabilities to grant: network,files,secrets")
        p.set_defaults(fn=plugins_switch, action=action)
        made.append(p)
    return made
