"""Installed is not loaded: a process imports a plugin only when a workspace enables it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from baton_common import plugins
from baton_common.plugins import PluginHost

LAZY = """
from pathlib import Path
from baton_common.plugins import hookimpl

with open(Path(__file__).with_name("imports.log"), "a") as log:  # the import's side effect
    log.write(__name__ + "\\n")
CAPABILITIES = ("files",)

@hookimpl
def after_plan(plan):
    return {"steps": [{"id": "seen"}]}
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Two plugins on the path, ``lazyone`` and ``crashes``, named by entry points only."""
    (tmp_path / "t26_lazyone.py").write_text(LAZY)
    (tmp_path / "t26_crashes.py").write_text("raise SystemExit('exits on import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        EntryPoint("lazyone", "t26_lazyone", "baton.plugins"),
        EntryPoint("crashes", "t26_crashes", "baton.plugins"),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    yield tmp_path / "imports.log"
    for name in ("t26_lazyone", "t26_crashes"):
        sys.modules.pop(name, None)


def _imports(log: Path) -> str:
    """The modules the import log names (empty: none was imported)."""
    return log.read_text() if log.exists() else ""


async def test_a_plugin_no_workspace_enables_is_never_imported(installed: Path) -> None:
    host = PluginHost(timeout_s=1)
    assert host.names() == ["crashes", "lazyone"] and host.loaded() == []
    assert await host.call("after_plan", {}, plan={}) == []
    assert await host.call("after_plan", {"other": []}, plan={}) == []
    assert not host.runs_in("lazyone", {})
    assert "t26_lazyone" not in sys.modules and _imports(installed) == ""


async def test_enabling_imports_it_once_and_its_hooks_run(installed: Path) -> None:
    host = PluginHost(timeout_s=1)
    [outcome] = await host.call("after_plan", {"lazyone": ["files"]}, plan={})
    assert outcome.result == {"steps": [{"id": "seen"}]}
    await host.call("after_plan", {"lazyone": ["files"]}, plan={})
    assert _imports(installed) == "t26_lazyone\n" and host.loaded() == ["lazyone"]


async def test_a_capability_is_checked_after_import_and_a_broken_one_is_kept_off(
    installed: Path,
) -> None:
    host = PluginHost(timeout_s=1)
    assert await host.call("after_plan", {"lazyone": []}, plan={}) == []  # needs files
    assert await host.call("after_plan", {"crashes": []}, plan={}) == []
    assert host.broken == {"crashes": "SystemExit: exits on import"}
    host.reload()  # a catalogue change: nothing is imported again until it is needed
    assert host.loaded() == [] and host.broken == {}
