"""The catalogue's scan in a child process.

Describing an installed tool or plugin means importing it, which runs its import-time code. That
happens here, in a short-lived child with a scrubbed environment (no database URL, no API keys,
no tokens) and no network (an audit hook refuses every connection), never in a long-running
service: a service imports a plugin only once a workspace it serves enables it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from baton_common.agentfiles import agents_dir
from baton_common.discovery import Scan, scan

# What the child may see of the parent's environment: enough to find Python and its packages.
SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
SCAN_TIMEOUT_S = 120.0
REFUSED_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.gethostbyname"})


class ScanFailed(RuntimeError):
    """The child could not scan (it crashed or took too long); the catalogue stays as it was."""


def scan_isolated(folder: Path | None = None, timeout_s: float = SCAN_TIMEOUT_S) -> Scan:
    """What ``scan`` finds, found by a child process (blocking: call it in a thread)."""
    folder = folder if folder is not None else agents_dir()
    env = {k: v for k in SAFE_ENV if (v := os.environ.get(k)) is not None}
    with tempfile.TemporaryDirectory(prefix="baton-scan-") as tmp:
        out = Path(tmp) / "scan.json"
        cmd = [sys.executable, "-m", "baton_common.scanchild", str(folder), str(out)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ScanFailed(f"the tool scan took longer than {timeout_s:g}s") from None
        if done.returncode != 0 or not out.exists():
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ScanFailed(f"the tool scan failed: {why}"[:500])
        return Scan(**json.loads(out.read_text()))


def _refuse_network(event: str, _args: Any) -> None:
    if event in REFUSED_EVENTS:
        raise PermissionError(f"no network while scanning plugins ({event})")


def main(argv: list[str]) -> int:
    """``python -m baton_common.scanchild FOLDER OUT``: scan, write the result to OUT as JSON."""
    sys.addaudithook(_refuse_network)  # stays for the child's whole (short) life
    found = scan(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(asdict(found), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
