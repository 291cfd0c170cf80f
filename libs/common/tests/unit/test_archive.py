"""The archive's objects and folder, and what an archived execution's summary keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from baton_common import archive
from baton_common.archive import ArchiveError, LocalArchive, open_archive
from baton_common.retention import RetentionSettings, summary


def test_the_same_lines_encode_to_the_same_bytes_and_decode_back() -> None:
    lines = [{"kind": "execution", "view": {"b": 1, "a": [1, 2]}}, {"kind": "history", "seq": 3}]
    data = archive.encode(lines)
    assert archive.encode(lines) == data  # no time in the gzip header: a rewrite is identical
    assert list(archive.decode(data)) == lines
    assert list(next(archive.decode(data))["view"]) == ["b", "a"]  # keys in the order read


def test_a_folder_archive_writes_verifies_lists_and_deletes(tmp_path: Path) -> None:
    store = LocalArchive(tmp_path)
    key = archive.object_key("team", uuid4(), datetime(2026, 12, 7, tzinfo=UTC))
    assert key.startswith("team/2026/12/07/") and key.endswith(".jsonl.gz")
    data = archive.encode([{"kind": "execution"}])
    manifest = {"sha256": archive.checksum(data)}
    archive.write_verified(store, key, data, manifest)
    assert store.keys("team/") == sorted([key, archive.manifest_key(key)])
    assert archive.read_verified(store, key, manifest["sha256"]) == [{"kind": "execution"}]
    (tmp_path / key).write_bytes(data + b"x")  # changed behind its back
    with pytest.raises(ArchiveError, match="checksum"):
        archive.read_verified(store, key, manifest["sha256"])
    assert store.delete_prefix("team/") == 2
    assert store.keys("team/") == [] and store.get(key) is None
    with pytest.raises(ArchiveError, match="leaves"):
        store.put("../outside", b"")


def test_a_batch_of_objects_is_written_whole_verified_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    store = LocalArchive(tmp_path)
    days = [datetime(2026, 12, d, tzinfo=UTC) for d in (6, 7, 7)]
    histories = []
    for day in days:
        data = archive.encode([{"kind": "execution", "day": day.day}])
        key = archive.object_key("team", uuid4(), day)
        histories.append((key, data, {"sha256": archive.checksum(data)}))
    archive.write_all(store, histories)
    expected = sorted(k for key, _, _ in histories for k in (key, archive.manifest_key(key)))
    assert store.keys("team/") == expected
    assert not list(tmp_path.rglob("*.part"))
    for key, data, manifest in histories:
        assert store.get(key) == data
        assert archive.read_verified(store, key, manifest["sha256"])[0]["day"] in (6, 7)

    # one bad key: nothing of the batch is written, and no temporary file stays behind
    fresh = LocalArchive(tmp_path / "fresh")
    with pytest.raises(ArchiveError, match="leaves"):
        fresh.put_many({"team/a.jsonl.gz": b"a", "../../outside": b"b"})
    assert fresh.keys("") == [] and not list((tmp_path / "fresh").rglob("*.part"))


def test_lines_with_times_and_lone_surrogates_encode_as_the_standard_library_read_them() -> None:
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    lines = [{"kind": "history", "occurred_at": at, "id": uuid4(), 3: "int key"}, {"s": "\udb5e"}]
    back = list(archive.decode(archive.encode(lines)))
    assert back[0] == {
        "kind": "history",
        "occurred_at": str(at),
        "id": str(lines[0]["id"]),
        "3": "int key",
    }
    assert back[1] == {"s": "\udb5e"}  # escaped (orjson refuses it), read back the same


def test_the_archive_is_chosen_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATON_ARCHIVE_URL", raising=False)
    monkeypatch.delenv("BATON_ARCHIVE_DIR", raising=False)
    assert open_archive(tmp_path).where == str(tmp_path / "archive")
    monkeypatch.setenv("BATON_ARCHIVE_DIR", str(tmp_path / "elsewhere"))
    assert open_archive(tmp_path).where == str(tmp_path / "elsewhere")
    monkeypatch.setenv("BATON_ARCHIVE_URL", "gs://bucket")
    with pytest.raises(ArchiveError, match="s3://"):
        open_archive(tmp_path)


def test_a_summary_keeps_what_lists_and_metrics_read_and_drops_the_detail() -> None:
    view = {
        "id": "x",
        "status": "succeeded",
        "request": "r",
        "inputs": {"big": "…"},
        "outputs": {"big": "…"},
        "plan": {"name": "p", "steps": [{"id": "a", "tool": "mock.agent", "input": {"k": 1}}]},
        "steps": {"a": {"tool": "mock.agent", "status": "succeeded", "output": "…", "attempts": 1}},
        "finished_at": "2026-12-07T10:00:00+00:00",
        "conflicts": [],
    }
    kept = summary(view, "k", datetime(2026, 12, 8, tzinfo=UTC))
    assert kept["plan"] == {"name": "p", "steps": [{"id": "a", "tool": "mock.agent"}]}
    assert kept["steps"]["a"] == {
        "tool": "mock.agent",
        "status": "succeeded",
        "attempts": 1,
        "duration_ms": None,
    }
    assert "inputs" not in kept and "outputs" not in kept
    assert kept["archived_at"].startswith("2026-12-08") and kept["archive"] == "k"
    assert kept["finished_at"] == view["finished_at"]


def test_a_workspace_retention_is_held_within_the_installation_bounds() -> None:
    bounds = RetentionSettings(BATON_RETENTION_MIN_DAYS=1, BATON_RETENTION_MAX_DAYS=90)
    assert bounds.problem(None) is None and bounds.problem(30) is None
    assert "outside" in (bounds.problem(0.5) or "") and "outside" in (bounds.problem(365) or "")


def test_a_write_killed_half_way_leaves_its_temporary_file_in_incoming_and_clean_removes_it(
    tmp_path: Path,
) -> None:
    store = LocalArchive(tmp_path)
    store.put("team/2026/12/07/a.jsonl.gz", b"a")
    left = tmp_path / archive.INCOMING / "b.jsonl.gz.x1.part"  # what a kill -9 mid-write leaves
    left.write_bytes(b"half")
    assert store.keys("") == ["team/2026/12/07/a.jsonl.gz"]  # never listed as an object
    assert store.clean() == 1
    assert not left.exists() and store.get("team/2026/12/07/a.jsonl.gz") == b"a"
    assert store.clean() == 0


def test_audit_rows_are_taken_by_whole_days_from_a_period_of_a_day_or_more() -> None:
    from baton_common.auditarchive import cutoff, part_key

    now = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)
    assert cutoff(365, now) == datetime(2025, 12, 7, tzinfo=UTC)
    assert cutoff(1.5, now) == datetime(2026, 12, 6, tzinfo=UTC)
    assert cutoff(0.5, now) == datetime(2026, 12, 7, 3, 30, tzinfo=UTC)  # under a day: as is
    key = part_key("team", now.date(), "e1")
    assert key == "team/audit/2026/12/07/e1.jsonl.gz"  # under the workspace: erased with it
