"""Plugin trust on the engine as processes: installed pinned and hashed, imported only where a
workspace enabled it, held to the capabilities it declares.

The test plugin (``tests/e2e/plugins/baton-trust-plugins``) is built into a wheel here, installed
through ``baton plugins install`` from an index written here, and removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
BATON = str(Path(sys.executable).parent / "baton")
REPO = Path(__file__).resolve().parents[2]
TRUST_PLUGINS = REPO / "tests" / "e2e" / "plugins" / "baton-trust-plugins"
PIP = [sys.executable, "-m", "pip"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The test plugin's wheel in a dist folder, and its sha256; uninstalled at the end."""
    dist = tmp_path_factory.mktemp("dist")
    build = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    subprocess.run([*build, str(TRUST_PLUGINS)], check=True)
    [made] = dist.glob("baton_trust_plugins-0.1.0-*.whl")
    yield dist, hashlib.sha256(made.read_bytes()).hexdigest()
    subprocess.run([*PIP, "uninstall", "-y", "-q", "baton-trust-plugins"], check=False)


def _baton(index: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATON_PLUGIN_INDEX": str(index)}
    return subprocess.run([BATON, *args], env=env, capture_output=True, text=True, timeout=120)


def _index(tmp: Path, dist: Path, **entry: Any) -> Path:
    plugin = {
        "name": "trust",
        "description": "test",
        "package": "baton-trust-plugins",
        "version": "0.1.0",
        "capabilities": [],
        **entry,
    }
    path = tmp / "index.json"
    path.write_text(json.dumps({"dist": str(dist), "plugins": [plugin]}))
    return path


def _installed() -> bool:
    shown = subprocess.run([*PIP, "show", "-q", "baton-trust-plugins"], capture_output=True)
    return shown.returncode == 0


def test_an_entry_without_a_pin_and_hash_is_refused(
    tmp_path: Path, wheel: tuple[Path, str]
) -> None:
    dist, sha = wheel
    unhashed = _baton(_index(tmp_path, dist), "plugins", "install", "trust", "--no-refresh")
    assert unhashed.returncode == 2 and "no sha256 of the distribution file" in unhashed.stderr
    unpinned = _index(tmp_path, dist, version=">=0.1", sha256=sha)
    done = _baton(unpinned, "plugins", "install", "trust", "--no-refresh")
    assert done.returncode == 2 and "is not an exact version" in done.stderr
    assert not _installed() and "Traceback" not in unhashed.stderr + done.stderr


@pytest.mark.parametrize(
    "package",
    ["-e ./tests/e2e/plugins/baton-trust-plugins", "--index-url=http://127.0.0.1:9/simple"],
)
def test_a_package_string_that_is_a_pip_option_is_refused(
    tmp_path: Path, wheel: tuple[Path, str], package: str
) -> None:
    dist, sha = wheel
    index = _index(tmp_path, dist, package=package, sha256=sha)
    done = _baton(index, "plugins", "install", "trust", "--no-refresh")
    assert done.returncode == 2 and "looks like a pip option: refused" in done.stderr
    assert not _installed()


@pytest.mark.parametrize("package", ["./baton-trust-plugins", "https://127.0.0.1:9/x.whl"])
def test_a_path_or_url_is_refused(tmp_path: Path, wheel: tuple[Path, str], package: str) -> None:
    dist, sha = wheel
    index = _index(tmp_path, dist, package=package, sha256=sha)
    done = _baton(index, "plugins", "install", "trust", "--no-refresh")
    assert done.returncode == 2 and "not a plain distribution name" in done.stderr


def test_a_tampered_distribution_fails_the_install_clearly(
    tmp_path: Path, wheel: tuple[Path, str]
) -> None:
    dist, sha = wheel
    other = "0" * 64 if sha != "0" * 64 else "1" * 64  # the file is not what the index pinned
    done = _baton(
        _index(tmp_path, dist, sha256=other), "plugins", "install", "trust", "--no-refresh"
    )
    assert done.returncode == 2, done.stdout
    assert "installing 'trust' failed: the distribution's sha256 does not match" in done.stderr
    assert other in done.stderr and sha in done.stderr
    assert not _installed() and "Traceback" not in done.stderr


def test_only_enabled_plugins_are_imported_and_capabilities_hold(
    tmp_path: Path, wheel: tuple[Path, str], module_engine: Any
) -> None:
    dist, sha = wheel
    done = _baton(_index(tmp_path, dist, sha256=sha), "plugins", "install", "trust", "--no-refresh")
    assert done.returncode == 0, done.stderr
    assert "installed trust (baton-trust-plugins==0.1.0)" in done.stdout
    imports = tmp_path / "imports.jsonl"
    e = module_engine({"BATON_TEST_IMPORT_LOG": str(imports)})
    # The executor's first scan (a child process) may still be running when the gateway is ready.
    deadline = time.monotonic() + 90
    while True:
        listed = {p["name"]: p for p in e.http.get(f"{e.url}/v1/plugins").json()["plugins"]}
        if "nonet" in listed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert listed["nonet"]["capabilities"] == [] and not listed["nonet"]["enabled"]
    # Installed, scanned, listed, steps run: no service imported it (no workspace enables it).
    plan = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": 1}}]}
    view = _run(e, plan)
    assert view["status"] == "succeeded"
    assert not imports.exists(), imports.read_text()
    # Enabled: the worker imports it, and its tool may not call out without `network`.
    assert e.cli("plugins", "enable", "nonet").returncode == 0
    fetch = {"steps": [{"id": "f", "tool": "trust.fetch", "input": {"url": e.url + "/readyz"}}]}
    for _ in range(20):  # the executor reads policies from the read model, cached for 2 s
        view = _run(e, fetch)
        if "not enabled" not in (view.get("error") or ""):
            break
        time.sleep(0.5)
    assert view["status"] == "failed", view
    error = view["steps"]["f"]["error"]
    assert "plugin 'nonet' may not call out over the network" in error
    assert "lacks the capability 'network'" in error
    assert view["steps"]["f"]["attempts"] == 1  # refused for good, not retried
    # Imported since, by the services of the workspace that enabled it (the worker among them).
    importers = [" ".join(json.loads(line)["argv"]) for line in imports.read_text().splitlines()]
    assert any("serve worker" in argv for argv in importers), importers


def _run(e: Any, plan: dict[str, Any]) -> dict[str, Any]:
    resp = e.http.post(f"{e.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return dict(e.wait(resp.json()["id"]))
