import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from baton_common.aggregate import Aggregate
from baton_common.contracts import ExecutionCancelRequested, ExecutionRequested
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore, Timer


class Request(Aggregate):
    cancelled = False

    def on_cancel_requested(self, _event: object) -> None:
        self.cancelled = True


def test_commit_load_and_notification_order() -> None:
    store = MemoryEventStore()
    agg = Request(uuid4())
    agg.trigger(ExecutionRequested, request="hello")
    agg.trigger(ExecutionCancelRequested, reason="changed my mind")
    store.commit(Commit(events=agg.collect()))
    again = Request.rebuild(agg.id, store.load(agg.id))
    assert again is not None and again.version == 2 and again.cancelled
    assert [p for p, _ in store.notifications(0, 10)] == [1, 2]
    assert [e.type for _, e in store.notifications(1, 10)] == ["execution.cancel_requested"]


def test_version_conflict_and_handled_message_are_rejected_whole() -> None:
    store = MemoryEventStore()
    agg_id = uuid4()
    store.commit(
        Commit(
            events=[ExecutionRequested(aggregate_id=agg_id, aggregate_version=1)],
            handled=[("c", "m1")],
        )
    )
    with pytest.raises(ConcurrencyConflict):
        store.commit(Commit(events=[ExecutionRequested(aggregate_id=agg_id, aggregate_version=1)]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            Commit(
                events=[ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1)],
                handled=[("c", "m1")],
            )
        )
    assert len(store.notifications(0, 10)) == 1  # nothing of the rejected commits was written
    assert store.handled("c", ["m1", "m2"]) == {"m1"}


def test_timers_are_set_and_cleared_with_the_commit() -> None:
    store = MemoryEventStore()
    now = datetime.now(UTC)
    store.commit(
        Commit(
            timers_set=[
                Timer("a", now - timedelta(seconds=1)),
                Timer("b", now + timedelta(hours=1)),
            ]
        )
    )
    assert [t.timer_id for t in store.due_timers(now, 10)] == ["a"]
    store.commit(Commit(timers_clear=["a"]))
    assert store.due_timers(now, 10) == []


def test_events_without_an_aggregate_version_are_not_stored() -> None:
    with pytest.raises(ValueError, match="no aggregate version"):
        MemoryEventStore().commit(Commit(events=[ExecutionRequested(aggregate_id=uuid4())]))


def test_jsonb_parameters_are_exact_whatever_their_values() -> None:
    """The store sets orjson as psycopg's JSON writer; what it refuses goes through json."""
    import json

    from psycopg.adapt import PyFormat, Transformer
    from psycopg.types.json import Jsonb

    dumper = Transformer().get_dumper(Jsonb({}), PyFormat.TEXT)
    for value in [{"n": 2**70}, {1: "a", "t": "é", "f": 1.5, "x": None}, [1, [2, {"y": True}]]]:
        written = dumper.dump(Jsonb(value))
        assert written is not None and json.loads(bytes(written)) == json.loads(json.dumps(value))


def test_an_escaped_nul_becomes_the_replacement_character_and_nothing_else_changes() -> None:
    from baton_common.store import json_text, plain_text, without_nul

    assert json.loads(without_nul(json.dumps({"a": "x\x00y\x00"}).encode())) == {
        "a": "x\ufffdy\ufffd"
    }
    literal = {"a": "\\u0000", "b": "\\\x00"}  # a backslash and 'u0000'; a backslash and a NUL
    assert json.loads(json_text(json.dumps(literal))) == {"a": "\\u0000", "b": "\\\ufffd"}
    assert without_nul(b'{"a": 1}') == b'{"a": 1}'
    assert plain_text("a\x00b") == "a\ufffdb" and plain_text(None) is None
