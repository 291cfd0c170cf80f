"""The peers' CPU accounting (bench/peers/_common.py): a server's CPU is its own tree's."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "peers"))

import _common


def test_a_tree_counts_its_descendants_and_nothing_else() -> None:
    table = {
        10: (1, "postgres", 1.0),  # our server's postmaster (not counted by tree_cpu itself)
        11: (10, "postgres", 2.0),  # its backends
        12: (10, "postgres", 4.0),
        13: (12, "postgres", 8.0),  # a grandchild
        20: (1, "postgres", 16.0),  # another server on the machine: not ours
        21: (20, "postgres", 32.0),
    }
    assert _common.tree_cpu(table, 10) == 14.0
    assert _common.tree_cpu(table, 20) == 32.0
    assert _common.tree_cpu(table, 13) == 0.0


def test_cpu_now_without_a_server_counts_no_database() -> None:
    own, db = _common.cpu_now(None)
    assert own >= 0.0 and db == 0.0
    own_without_self, _ = _common.cpu_now(None, include_self=False)
    assert own_without_self <= own
