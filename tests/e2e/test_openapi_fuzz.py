"""The published OpenAPI document, fuzzed against the engine as processes with schemathesis.

Every operation of ``/openapi.json`` gets generated requests in all four phases: the document's
examples, the coverage of each schema's edges (``null``, bounds, missing and wrong types), free
fuzzing, and stateful sequences that follow the document's links (create → read → act → delete).
No answer may be a server error (``not_a_server_error``): a request the API cannot take is a 4xx
with a reason.

Its own engine: the fuzzer makes schedules that fire, deletes what it made and changes the
workspace's policy, none of which the shared engine's tests expect. Nothing it sends may leave
the machine: the hooks (``openapi_hooks.py``) turn every URL into a closed loopback port, and the
engine's HTTP clients are pointed at a proxy on that same closed port.

``BATON_FUZZ_EXAMPLES`` (default 10) and ``BATON_FUZZ_SEED`` tune a run; on two cores the default
takes about three minutes, the engine's start included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
ST = str(Path(sys.executable).parent / "st")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused
NO_EGRESS = {
    "HTTP_PROXY": CLOSED,
    "HTTPS_PROXY": CLOSED,
    "ALL_PROXY": CLOSED,
    "NO_PROXY": "127.0.0.1,localhost",
}
# Streams that end only with their execution (or never, for the workspace's): a fuzzer waits
# for an answer, so they are left to their own tests.
STREAMS = r"(/stream|^/v1/stream)"
# The resources whose lifecycle the stateful phase walks: (create, an operation it links to).
LIFECYCLES = [
    ("POST /v1/executions", "GET /v1/executions/{execution_id}"),
    ("POST /v1/executions", "POST /v1/executions/{execution_id}/cancel"),
    ("POST /v1/schedules", "GET /v1/schedules/{schedule_id}"),
    ("POST /v1/schedules", "DELETE /v1/schedules/{schedule_id}"),
    ("POST /v1/triggers", "POST /v1/triggers/{trigger_id}/pause"),
    ("POST /v1/triggers", "DELETE /v1/triggers/{trigger_id}"),
    ("POST /v1/webhooks/endpoints", "POST /v1/webhooks/endpoints/{endpoint_id}/rotate"),
    ("POST /v1/webhooks/endpoints", "DELETE /v1/webhooks/endpoints/{endpoint_id}"),
    ("POST /v1/webhooks/subscriptions", "GET /v1/webhooks/subscriptions/{subscription_id}"),
    ("POST /v1/webhooks/subscriptions", "DELETE /v1/webhooks/subscriptions/{subscription_id}"),
    ("POST /v1/calendars", "GET /v1/calendars/{calendar}"),
    ("POST /v1/calendars", "DELETE /v1/calendars/{calendar}"),
    ("POST /v1/workspaces/{workspace_id}/keys", "DELETE /v1/keys/{key_id}"),
]


def linked(doc: dict[str, Any], create: str) -> set[str]:
    """``METHOD path`` of every operation that ``create``'s responses link to."""
    method, path = create.split(" ", 1)
    by_id = {
        op["operationId"]: f"{verb.upper()} {p}"
        for p, item in doc["paths"].items()
        for verb, op in item.items()
    }
    responses = doc["paths"][path][method.lower()]["responses"].values()
    return {by_id[link["operationId"]] for r in responses for link in r.get("links", {}).values()}


def fuzz(url: str, token: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    examples = os.environ.get("BATON_FUZZ_EXAMPLES", "10")
    config = workdir / "schemathesis.toml"
    config.write_text("[phases.stateful]\nmax-steps = 8\n")
    command = [
        *(ST, "--config-file", str(config), "run", f"{url}/openapi.json"),
        *("-H", f"Authorization: Bearer {token}"),
        *("--checks", "not_a_server_error"),
        *("--phases", "examples,coverage,fuzzing,stateful"),
        *("--max-examples", examples, "--workers", "2"),
        *("--exclude-path-regex", STREAMS),
        *("--request-timeout", "30", "--no-color"),
        # health checks judge the generated data (too slow, too filtered), not the API
        *("--suppress-health-check", "all"),
        *("--report", "junit", "--report-dir", str(workdir)),
    ]
    if seed := os.environ.get("BATON_FUZZ_SEED"):
        command += ["--seed", seed]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "openapi_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        command,
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300 + 30 * int(examples),  # ~3 min at 10 examples, on two busy cores
    )


def test_no_generated_request_gets_a_server_error(
    own_engine: Callable[..., Any], tmp_path: Path
) -> None:
    engine = own_engine(NO_EGRESS)
    doc = httpx.get(f"{engine.url}/openapi.json", timeout=10).json()
    for create, target in LIFECYCLES:  # what the stateful phase can walk
        assert target in linked(doc, create), f"{create} does not link to {target}"
    run = fuzz(engine.url, engine.token, tmp_path)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested and int(tested.group(1)) >= 100, summary  # every operation but the streams
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
