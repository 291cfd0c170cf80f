"""How ``baton run`` shows an execution's outputs to a person."""

from __future__ import annotations

from baton_cli.render import output_text

SLOTS = [
    {"start": "2026-12-10T09:00:00+00:00", "end": "2026-12-10T09:30:00+00:00", "score": 1.0,
     "reason": "inside everyone's working hours"},
    {"start": "2026-12-10T09:30:00+00:00", "end": "2026-12-10T10:00:00+00:00", "score": 0.8,
     "reason": None},
]  # fmt: skip


def test_a_list_of_flat_records_is_a_table_with_a_row_each() -> None:
    lines = output_text(SLOTS).splitlines()
    assert lines[0].split() == ["start", "end", "score", "reason"]
    assert set(lines[1].replace(" ", "")) == {"─"}
    assert lines[2].split()[:3] == ["2026-12-10T09:00:00+00:00", "2026-12-10T09:30:00+00:00", "1.0"]
    assert lines[2].endswith("inside everyone's working hours")
    assert lines[3].split() == ["2026-12-10T09:30:00+00:00", "2026-12-10T10:00:00+00:00", "0.8"]
    assert len(lines) == 4 and "{" not in output_text(SLOTS)


def test_the_start_and_end_lead_whatever_order_the_view_stored_the_keys_in() -> None:
    stored = [{"end": "10:30", "score": 1.0, "start": "10:00", "reason": "free"}]  # jsonb's order
    assert output_text(stored).splitlines()[0].split() == ["start", "end", "score", "reason"]


def test_text_stays_text_and_nested_data_stays_json() -> None:
    assert output_text("Hello Ada") == "Hello Ada"
    assert output_text([]) == "[]"
    assert output_text([{"a": {"b": 1}}]) == '[\n  {\n    "a": {\n      "b": 1\n    }\n  }\n]'
    assert output_text({"n": 1}) == '{\n  "n": 1\n}'
