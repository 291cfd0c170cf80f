"""Tools discovery and the agent registry, measured: a scan of N agent files in process, then on
the engine as processes (``baton up``, two workers): a refresh with nothing new, a refresh that
finds a new file, a new file's first execution, and ``GET /v1/agents``.

    .venv/bin/python -m bench.tools_refresh [--files 200] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from baton_common.discovery import scan
from baton_common.embedded import free_port
from baton_common.testing import stop, wait_ready

AGENT = """name: bench.t{i}
description: Bench tool number {i}, echoing its input.
input_schema: {{type: object}}
implementation: {{python: "json:dumps"}}
"""


def scan_ms(files: int) -> float:
    """One whole scan of ``files`` agent files (entry points included), in milliseconds."""
    with tempfile.TemporaryDirectory() as folder:
        for i in range(files):
            Path(folder, f"t{i}.yaml").write_text(AGENT.format(i=i))
        started = time.perf_counter()
        found = scan(Path(folder))
        assert len([t for t in found.tools if t["origin"].startswith("agents:")]) == files
        return (time.perf_counter() - started) * 1000


def _wait(http: httpx.Client, url: str, execution_id: str) -> dict[str, Any]:
    while True:
        view = http.get(f"{url}/v1/executions/{execution_id}").json()
        if view["status"] in ("succeeded", "failed", "cancelled"):
            return dict(view)
        time.sleep(0.01)


def engine_figures(rounds: int) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="baton-bench-tools-"))
    (data / "agents").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(
        BATON_DATA_DIR=str(data),
        BATON_HTTP_PORT=str(port),
        BATON_WORKERS="2",
        BATON_AGENTS_DIR=str(data / "agents"),
        OTEL_SDK_DISABLED="true",
    )
    baton = str(Path(sys.executable).parent / "baton")
    proc = subprocess.Popen(
        [baton, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        key = (data / "owner.key").read_text().strip()
        http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        same, new, first_run, agents = [], [], [], []
        for i in range(rounds):
            started = time.perf_counter()
            http.post(f"{url}/v1/tools/refresh", json={}).raise_for_status()
            same.append((time.perf_counter() - started) * 1000)
            (data / "agents" / f"t{i}.yaml").write_text(AGENT.format(i=i))
            started = time.perf_counter()
            http.post(f"{url}/v1/tools/refresh", json={}).raise_for_status()
            new.append((time.perf_counter() - started) * 1000)
            plan = {"steps": [{"id": "a", "tool": f"bench.t{i}", "input": {"i": i}}]}
            made = http.post(f"{url}/v1/executions", json={"plan": plan}).json()["id"]
            assert _wait(http, url, made)["status"] == "succeeded"
            first_run.append((time.perf_counter() - started) * 1000)
        for _ in range(rounds * 2):
            started = time.perf_counter()
            http.get(f"{url}/v1/agents").raise_for_status()
            agents.append((time.perf_counter() - started) * 1000)
        return {
            "refresh_unchanged_p50_ms": statistics.median(same),
            "refresh_new_file_p50_ms": statistics.median(new),
            "new_file_to_first_success_p50_ms": statistics.median(first_run),
            "agents_read_p50_ms": statistics.median(agents),
        }
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"scan of {args.files} agent files: {scan_ms(args.files):.0f} ms")
    for name, value in engine_figures(args.rounds).items():
        print(f"{name}: {value:.0f}")


if __name__ == "__main__":
    main()
