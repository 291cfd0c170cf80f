"""Agent files and scans: good files become tools, broken ones are listed with file and reason."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pluggy
import pytest
from baton_common.catalogue import DEPLOYED_TOOLS, Catalogue
from baton_common.discovery import CatalogueFollower, scan, specs_of
from baton_common.plugins import HookSpecs, PluginHost, Veto, hookimpl

GOOD = """
name: weather.lookup
description: Look up the weather of a city.
input_schema:
  type: object
  properties: {city: {type: string}}
  required: [city]
output_schema: {type: object}
side_effect: read
rate_limit: 10/s
implementation:
  http: {url: "http://127.0.0.1:9/weather", method: POST}
"""


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(textwrap.dedent(text))


def test_a_good_agent_file_becomes_a_tool(tmp_path: Path) -> None:
    _write(tmp_path, "weather.yaml", GOOD)
    found = scan(tmp_path)
    entry = next(t for t in found.tools if t["spec"]["name"] == "weather.lookup")
    assert entry["origin"] == f"agents:{tmp_path / 'weather.yaml'}"
    assert entry["implementation"] == {
        "http": {"url": "http://127.0.0.1:9/weather", "method": "POST", "headers": {}}
    }
    assert entry["spec"]["text_field"] == "city"
    assert entry["spec"]["rate_limit"] == "10/s"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name: [unclosed", "invalid YAML"),
        ("- a list", "an agent file is a mapping"),
        (
            GOOD.replace("type: object\n  properties", "type: objekt\n  properties"),
            "not a JSON schema",
        ),
        (GOOD.replace("side_effect: read", "side_effect: maybe"), "side_effect"),
        (
            GOOD.replace(
                '  http: {url: "http://127.0.0.1:9/weather", method: POST}',
                "  python: nosuchpkg.mod:fn",
            ),
            "not installed",
        ),
        (GOOD.replace("  http:", "  llm: {prompt: hi}\n  http:"), "exactly one of"),
        (GOOD.replace("name: weather.lookup", "name: http.request"), "already taken"),
    ],
)
def test_a_broken_agent_file_is_listed_with_its_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    _write(tmp_path, "bad.yaml", text)
    _write(tmp_path, "fine.yml", GOOD.replace("weather.lookup", "weather.fine"))
    found = scan(tmp_path)
    assert [t["spec"]["name"] for t in found.tools if t["origin"].startswith("agents:")] == [
        "weather.fine"
    ]
    [broken] = [b for b in found.broken if b.get("file")]
    assert broken["file"].endswith("bad.yaml") and reason in broken["reason"], broken


def test_the_digest_follows_the_content(tmp_path: Path) -> None:
    _write(tmp_path, "weather.yaml", GOOD)
    first = scan(tmp_path).digest
    assert scan(tmp_path).digest == first
    _write(tmp_path, "weather.yaml", GOOD.replace("Look up", "Find"))
    assert scan(tmp_path).digest != first


def test_a_follower_applies_the_newest_catalogue_in_place(tmp_path: Path) -> None:
    _write(tmp_path, "weather.yaml", GOOD)
    catalogue = Catalogue()
    follower = CatalogueFollower(bus=None, catalogue=catalogue)
    newer = scan(tmp_path).event("test", after_seq=1)
    older = (
        scan(tmp_path / "none")
        .event("test", after_seq=0)
        .model_copy(update={"occurred_at": newer.occurred_at.replace(year=2000)})
    )
    assert follower.apply(newer) and "weather.lookup" in catalogue
    assert not follower.apply(older) and "weather.lookup" in catalogue
    assert len(specs_of(newer)) == len(DEPLOYED_TOOLS) + len(newer.tools)
    # The tools the executor runs itself stay offered after any catalogue change.
    assert {"context.set", "context.get", "agent.send", "agent.request"} <= set(catalogue.names())


def test_a_new_catalogue_makes_the_plugin_host_read_the_installed_plugins_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower tells the process's plugin host (the host does not listen to discovery)."""
    from baton_common import plugins

    host = PluginHost()
    reloads: list[None] = []
    monkeypatch.setattr(host, "reload", lambda: reloads.append(None))
    monkeypatch.setattr(plugins, "_HOST", [host])
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())
    event = scan(tmp_path).event("test", after_seq=1)
    assert follower.apply(event) and len(reloads) == 1
    assert not follower.apply(event) and len(reloads) == 1  # the same one: nothing to read


# --- plugin hooks: order, veto, errors and timeouts are outcomes, never exceptions ----------------


class Slow:
    @hookimpl
    def before_step(self, step: dict) -> None:
        time.sleep(5)


class Raises:
    ORDER = 1

    @hookimpl
    def before_step(self, step: dict) -> None:
        raise RuntimeError("boom")


class Vetoes:
    @hookimpl
    def after_plan(self, plan: dict) -> None:
        raise Veto("no deletes")


def _host(**plugins: object) -> PluginHost:
    host = PluginHost(timeout_s=0.2)
    host.pm = pluggy.PluginManager("baton")
    host.pm.add_hookspecs(HookSpecs)
    for name, plugin in plugins.items():
        host.pm.register(plugin, name=name)
        host.capabilities[name] = frozenset(getattr(plugin, "CAPABILITIES", ()))
        host.order[name] = (int(getattr(plugin, "ORDER", 100)), name)
    return host


async def test_hooks_run_in_order_and_failures_are_outcomes() -> None:
    host = _host(slow=Slow(), raises=Raises())
    grants = {"slow": [], "raises": []}
    started = time.monotonic()
    outcomes = await host.call("before_step", grants, step={"id": "a"})
    assert time.monotonic() - started < 2  # the hanging hook was not waited for
    assert [o.plugin for o in outcomes] == ["raises", "slow"]  # ORDER 1 before the default 100
    assert outcomes[0].error == "RuntimeError: boom"
    assert "timed out after 0.2s" in (outcomes[1].error or "")


async def test_a_veto_carries_its_reason_and_only_enabled_plugins_run() -> None:
    host = _host(vetoes=Vetoes())
    assert await host.call("after_plan", {}, plan={}) == []  # not enabled here
    [outcome] = await host.call("after_plan", {"vetoes": []}, plan={})
    assert outcome.veto == "no deletes"


async def test_a_capability_not_granted_keeps_the_plugin_off() -> None:
    plugin = Vetoes()
    plugin.CAPABILITIES = ("network",)  # type: ignore[attr-defined]
    host = _host(vetoes=plugin)
    assert await host.call("after_plan", {"vetoes": []}, plan={}) == []
    assert len(await host.call("after_plan", {"vetoes": ["network"]}, plan={})) == 1
    await asyncio.sleep(0)


REPO = Path(__file__).resolve().parents[4]


def test_the_shipped_example_agent_and_plugin_index_are_valid() -> None:
    found = scan(REPO / "docs" / "examples" / "agents")
    # (the scan also lists what is installed beside: e2e runs install test plugins, some broken)
    mine = [b for b in found.broken if str(b.get("origin", "")).startswith("agents:")]
    assert not mine and "agents.headline" in [t["spec"]["name"] for t in found.tools]
    import hashlib
    import json

    index = json.loads((REPO / "plugins" / "index.json").read_text())
    for entry in index["plugins"]:
        assert {"name", "description", "version", "package", "sha256", "capabilities"} <= set(entry)
        # The pinned wheel is shipped next to the index, and its hash is the one pinned.
        wheel = entry["package"].replace("-", "_") + f"-{entry['version']}-py3-none-any.whl"
        data = (REPO / "plugins" / index["dist"] / wheel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


class Stuck:
    @hookimpl
    def before_step(self, step: dict) -> None:
        time.sleep(1)


async def test_a_plugin_whose_calls_hang_is_skipped_not_queued() -> None:
    from baton_common.plugins import MAX_STUCK

    host = _host(stuck=Stuck())
    host.timeout_s = 0.05
    errors = [
        (await host.call("before_step", {"stuck": []}, step={}))[0].error or ""
        for _ in range(MAX_STUCK + 1)
    ]
    assert all("timed out" in e for e in errors[:MAX_STUCK])
    assert f"skipped: {MAX_STUCK} earlier calls still running" in errors[-1]
    await asyncio.sleep(1.2)  # the threads return: the plugin runs again
    assert "timed out" in ((await host.call("before_step", {"stuck": []}, step={}))[0].error or "")


class Exits:
    @hookimpl
    def after_step(self, step: dict, output: object) -> None:
        raise SystemExit(3)


async def test_a_hook_that_exits_is_a_failed_hook_not_a_dead_worker() -> None:
    [outcome] = await _host(exits=Exits()).call("after_step", {"exits": []}, step={}, output=1)
    assert outcome.error == "SystemExit: 3"
