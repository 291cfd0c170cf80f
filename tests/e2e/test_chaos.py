"""The short chaos run: every service, nats-server and PostgreSQL killed in turn under load;
nothing is lost, stuck or done twice. (``baton chaos`` starts its own engine.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

BATON = str(Path(sys.executable).parent / "baton")


def test_a_short_chaos_run_loses_nothing_and_duplicates_nothing() -> None:
    done = subprocess.run(
        [BATON, "chaos", "--executions", "30", "--duration", "25", "--drain", "45", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    killed = {k["process"] for k in report["kills"]}
    assert {"nats-server", "postgres", "executor", "worker", "gateway"} <= killed, report
    assert report["accepted"] == 30, report
    assert report["lost"] == 0, report["failures"]
    assert report["duplicated"] == 0, report
    assert report["stuck"] == 0, report["failures"]
    assert report["parked"] == 0, report  # no message given up on either
    assert report["effects"] == 3 * report["succeeded"]
    assert done.returncode == 0
