"""The saturation table's figures (bench/saturation.py): the best peer, the ratio, the verdict."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: `bench`

from bench.saturation import in_commits, lines, verdict


def test_the_best_peer_is_the_fastest_one_with_a_figure() -> None:
    v = verdict(2_000.0, {"dbos": 300.0, "restate": 450.0, "temporal (local)": None})
    assert v.best_peer == "restate"
    assert v.best_steps_per_s == 450.0
    assert v.ratio is not None and abs(v.ratio - 2_000 / 450) < 1e-9
    assert v.met is False  # 4.4 times


def test_the_target_is_five_times_inclusive() -> None:
    assert verdict(2_250.0, {"dbos": 450.0}).met is True
    assert verdict(2_249.0, {"dbos": 450.0}).met is False


def test_no_figure_means_not_met() -> None:
    assert verdict(None, {"dbos": 300.0}) == verdict(0.0, {"dbos": 300.0})
    assert verdict(None, {"dbos": 300.0}).met is False
    nobody = verdict(5_000.0, {"dbos": None})
    assert (nobody.best_peer, nobody.ratio, nobody.met) == (None, None, False)


def test_time_per_step_in_commits() -> None:
    assert in_commits(1_000.0, 0.5) == 2.0  # 1 ms per step, 0.5 ms a commit
    assert in_commits(None, 0.5) is None
    assert in_commits(1_000.0, None) is None


def test_the_table_has_both_baton_forms_each_peer_and_the_verdicts() -> None:
    def sat(sps: float, cpu: float) -> dict[str, float]:
        return {"executions": 100, "steps_per_s": sps, "cpu_ms_per_step": cpu}

    baton = [
        {"saturation": sat(3_000, 1.0), "worker_saturation": sat(1_000, 2.0)},
        {"saturation": sat(3_400, 1.2), "worker_saturation": sat(1_400, 2.4)},
    ]
    peers = {
        "dbos": [{"saturation": {"steps_per_s": 300, "cpu_ms_per_step": 3.0, "durability": "d"}}],
        "restate": [{"saturation": {"steps_per_s": 240, "cpu_ms_per_step": 4.0}}],
    }
    text = "\n".join(lines(baton, peers, 0.5, "fsync=on"))
    assert "| **Baton** | pure steps" in text and "| 3,200 | 0.6 | 1.10 |" in text
    assert "| **Baton** | steps through a worker" in text and "| 1,200 | 1.7 | 2.20 |" in text
    assert "| dbos |" in text and "| 300 | 6.7 | 3.00 |" in text and "| d |" in text
    assert "- Baton through workers: 1,200 steps/s, ×4.0 the best peer (dbos, 300 steps/s)" in text
    assert "≥ 5×: **no**" in text
    assert (
        "- Baton pure: 3,200 steps/s, ×10.7 the best peer (dbos, 300 steps/s); ≥ 5×: **yes**"
        in text
    )
