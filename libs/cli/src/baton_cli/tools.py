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

from baton_cli.errors import CliError
from baton_cli.verbs import api as _api
from baton_cli.verbs import print_lines, print_reply, verb

# The index shipped in the repository (plugins/index.json); BATON_PLUGIN_INDEX points elsewhere.
DEFAULT_INDEX = Path(__file__).resolve().parents[4] / "plugins" / "index.json"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}ms"


def tools_list(args: argparse.Namespace) -> int:
    return print_reply(args, _api(args, "GET", "/v1/tools"), _catalogue)


def _catalogue(data: dict[str, Any]) -> str:
    lines = []
    for t in data["tools"]:
        s = t["stats"]
        lines.append(
            f"{t['name']:<28} {t['side_effect']:<8} {t['origin'] or '?':<40} "
            f"calls {s['calls']:<5} ok {_pct(s['success_rate']):>4}  p50 {_ms(s['p50_ms'])}"
        )
    return "\n".join(lines + _broken(data))


def _broken(data: dict[str, Any]) -> list[str]:
    return [f"BROKEN {b.get('file') or b['origin']}: {b['reason']}" for b in data["broken"]]


def tools_show(args: argparse.Namespace) -> int:
    print(json.dumps(_api(args, "GET", f"/v1/tools/{args.name}"), indent=2))
    return 0


def tools_refresh(args: argparse.Namespace) -> int:
    data = _api(args, "POST", "/v1/tools/refresh", {})
    print("\n".join([f"catalogue {data['digest']}: {data['tools']} tools", *_broken(data)]))
    return 0


def agents_list(args: argparse.Namespace) -> int:
    if args.name:
        print(json.dumps(_api(args, "GET", f"/v1/agents/{args.name}"), indent=2))
        return 0
    return print_reply(args, _api(args, "GET", "/v1/agents")["agents"], _agents)


def _agents(rows: list[dict[str, Any]]) -> str:
    head = f"{'agent':<28} {'calls':>6} {'ok':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'retries':>7}"
    return "\n".join([head, *map(_agent, rows)])


def _agent(a: dict[str, Any]) -> str:
    return (
        f"{a['name']:<28} {a['calls']:>6} {_pct(a['success_rate']):>5} {_ms(a['p50_ms']):>8} "
        f"{_ms(a['p95_ms']):>8} {_ms(a['p99_ms']):>8} {a['retries']:>7}"
        + (f"  errors {a['error_classes']}" if a["error_classes"] else "")
    )


# --- plugins: the index (local, no gateway needed) and the workspace's switches ----------------------


def index_path() -> Path:
    return Path(os.environ.get("BATON_PLUGIN_INDEX") or DEFAULT_INDEX)


def load_index() -> dict[str, Any]:
    """The index document (``{"plugins": [...], "dist"?: folder}``), or a clear error."""
    path = index_path()
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CliError(f"cannot read the plugin index {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"the plugin index {path} is not JSON: {exc}") from None
    if isinstance(data, list):
        data = {"plugins": data}
    if not isinstance(data, dict) or not isinstance(data.get("plugins"), list):
        raise CliError(f"the plugin index {path} has no 'plugins' list")
    return data


def read_index() -> list[dict[str, Any]]:
    return [p for p in load_index()["plugins"] if isinstance(p, dict) and p.get("name")]


def _entry(name: str) -> dict[str, Any]:
    found = next((p for p in read_index() if p["name"] == name), None)
    if found is None:
        raise CliError(f"no plugin {name!r} in the index {index_path()}; `baton plugins search`")
    return found


def plugins_search(args: argparse.Namespace) -> int:
    words = (args.words or "").lower()
    hits = [p for p in read_index() if words in json.dumps(p).lower()]
    return print_lines(
        hits,
        lambda p: f"{p['name']:<28} {p.get('version', ''):<8} {p.get('description', '')}",
        "no plugin matches",
    )


def plugins_info(args: argparse.Namespace) -> int:
    print(json.dumps(_entry(args.name), indent=2))
    return 0


def plugins_install(args: argparse.Namespace) -> int:
    from baton_cli.plugin_index import EntryRefused, dist_folder, pins_of

    entry = _entry(args.name)
    try:
        pins = pins_of(entry)
    except EntryRefused as exc:
        raise CliError(f"not installed: {exc}") from None
    dist = dist_folder(load_index(), index_path())
    if dist is not None and not dist.is_dir():
        raise CliError(f"plugin {args.name!r}: the index's dist folder {dist} is not there")
    _pip_install(args.name, pins, dist)
    needs = ", ".join(entry.get("capabilities") or []) or "nothing"
    print(f"installed {args.name} ({pins[0].package}=={pins[0].version}); needs: {needs}")
    if not args.no_refresh:
        tools_refresh(args)
    return 0


def _pip_install(name: str, pins: list[Any], dist: Path | None) -> None:
    """pip in hash-checking mode; then its declared dependencies must already be met, or the
    plugin is removed again (``--no-deps`` installed nothing it needs)."""
    import tempfile

    from baton_cli.plugin_index import pip_command, unmet

    with tempfile.TemporaryDirectory(prefix="baton-plugin-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("".join(f"{p.requirement}\n" for p in pins))
        done = subprocess.run(
            pip_command(sys.executable, reqs, dist), capture_output=True, text=True
        )
    if done.returncode != 0:
        raise CliError(f"installing {name!r} failed: {_pip_reason(done.stderr or done.stdout)}")
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    if problems := unmet(check.stdout, pins[0].package):
        pip = [sys.executable, "-m", "pip", "uninstall", "-y", "-q", pins[0].package]
        subprocess.run(pip, capture_output=True)
        raise CliError(f"plugin {name!r} removed again: {'; '.join(problems)}")


def _pip_reason(output: str) -> str:
    """pip's own words for why: a hash mismatch names both hashes; else its last error line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if any("DO NOT MATCH THE HASHES" in line for line in lines):
        found = [" ".join(line.split()) for line in lines if line.startswith(("Expected", "Got"))]
        return "the distribution's sha256 does not match the index: " + "; ".join(found)
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed"])[-1]


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
    tools = verb(
        sub, "tools", "the tool catalogue: origins, schemas, figures", tools_list, json=True
    )
    tsub = tools.add_subparsers(dest="tools_action")
    show = verb(tsub, "show", "one tool: spec, origin, figures", tools_show, "name")
    refresh = verb(tsub, "refresh", "scan plugins and the agents folder again", tools_refresh)
    agents = sub.add_parser("agents", help="the agent registry: calls, success, latency, errors")
    agents.add_argument("name", nargs="?")
    agents.add_argument("--json", action="store_true")
    agents.set_defaults(fn=agents_list)
    made += [tools, show, refresh, agents]
    plugins = sub.add_parser("plugins", help="plugins: search the index, install, enable…")
    psub = plugins.add_subparsers(dest="plugins_action", required=True)
    p = verb(psub, "search", "plugins in the index matching words", plugins_search)
    p.add_argument("words", nargs="?")
    verb(psub, "info", "one plugin's index entry", plugins_info, "name")
    p = verb(
        psub, "install", "pip-install a plugin from the index, then rescan", plugins_install, "name"
    )
    p.add_argument("--no-refresh", action="store_true", help="do not ask the engine to rescan")
    made.append(p)
    made.append(
        verb(psub, "list", "installed plugins and whether this workspace runs them", plugins_list)
    )
    for action in ("enable", "disable"):
        says = f"{action} a plugin's hooks in this workspace"
        p = verb(psub, action, says, plugins_switch, "name", action=action)
        if action == "enable":
            p.add_argument("--grant", help="capabilities to grant: network,files,secrets")
        made.append(p)
    return made
