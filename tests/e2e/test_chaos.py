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


SCALED = ("gateway", "executor", "worker", "projector")


def test_two_replicas_of_each_killed_in_turn_lose_nothing_and_match_a_rebuild() -> None:
    """Two processes each of the gateway, executor, worker and projector share the load; each
    of the eight is killed once mid-load (and restarted). The views then equal a rebuild's."""
    replicas = [arg for name in SCALED for arg in ("--replicas", f"{name}=2")]
    kills = [arg for name in SCALED for arg in ("--kill", name)]
    load = ["--executions", "30", "--duration", "20", "--drain", "90", "--seed", "3"]
    done = subprocess.run(
        [BATON, "chaos", *load, *replicas, *kills, "--rebuild", "--json"],
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout)
    killed = sorted(k["process"] for k in report["kills"])
    assert killed == sorted([*SCALED, *(f"{name}#2" for name in SCALED)]), report
    assert report["accepted"] == 30, report
    assert report["succeeded"] == 30, report["failures"]  # every step retried through the kills
    assert report["lost"] == 0, report["failures"]
    assert report["duplicated"] == 0, report
    assert report["stuck"] == 0, report["failures"]
    assert report["parked"] == 0, report
    assert report["effects"] == 3 * 30
    assert report["unlike_rebuild"] == 0, report["failures"]
    assert done.returncode == 0
