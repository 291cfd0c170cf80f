"""A rebuild from the stores writes exactly the rows the live projector wrote, table by table.

The live projector folds the events in small batches as the stream delivers them; the rebuild
reads every store's log and folds it in large chunks, each table written in one statement per
chunk. The histories here cross what the chunking could change: an attempt dispatched in one
live batch and ended in a later one, a step retried, a gate opened and granted, a saved plan's
version and run, a sealed input (shown as ``***``), a workspace key written again and again, an
audit trail. (Step logs only ever go over the stream: a rebuild has them from there.)"""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_projector import catchup, main, parallel, shadows
from baton_projector.main import _views, open_views

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEALED = "sealed:v1:" + "ab" * 16 + ":c2VjcmV0"
PLAN = {"name": "report", "steps": [{"id": "a", "tool": "http.request", "input": {"k": SEALED}}]}
# Each table's rows, without what only says when a row was written (seq, updated_at = now()).
TABLES = {
    "executions": "id, workspace_id, status, request, idempotency_key, created_at, updated_at, view",
    "execution_events": "execution_id, event_id, type, occurred_at, data",
    "audit": "event_id, workspace_id, occurred_at, actor, action, target, detail",
    "approvals": "id, status, opened_at, deadline_at, decided_at, version, view",
    "tool_attempts": "*",
    # a sum of floating-point numbers is exact only to its last bits, which depend on the order
    # of the additions: the live projector's batches already change it, and a rebuild over
    # several processes adds their partial sums; 12 significant digits are compared
    "business_metrics": "workspace_id, metric, subject, outcome, count,"
    " float8(to_char(total, '9.99999999999EEEE'))",
    "business_metric_events": "*",
    "business_metric_plans": "*",
    "business_metric_attempts": "*",
    "plan_versions": "*",
    "plan_runs": "*",
    "workspace_context": "*",
}


STORE = {"plan": "planner", "saved_plan": "planner", "approval": "hitl"}


def history(n: int) -> tuple[list[Event], list[Event]]:
    """The gateway's events and the other services', each in time order."""
    clock = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    gateway: list[Event] = []
    others: list[Event] = []
    plan_id, key = c.saved_plan_id("ws", "report"), uuid.uuid4()
    others.append(
        c.PlanVersionCreated(
            workspace_id="ws", aggregate_id=plan_id, aggregate_version=1, name="report",
            version=1, plan=PLAN, content_hash="sha256:x", actor="ada", current=True,
            occurred_at=next(clock),
        )
    )  # fmt: skip
    for i in range(n):
        eid = uuid.uuid4()
        at: dict[str, Any] = {"workspace_id": "ws", "aggregate_id": eid, "correlation_id": eid}
        task = dict(step_id="a", tool="http.request", input={"k": SEALED}, idempotency_key="k",
                    timeout_s=5)  # fmt: skip
        gateway.append(
            c.ExecutionRequested(**at, aggregate_version=1, request=f"run {i}\n\t\\ \"{i}\"", actor="ada",
                                 plan_ref={"name": "report"}, occurred_at=next(clock))
        )  # fmt: skip
        gate = uuid.uuid4()
        gate_at = {"workspace_id": "ws", "aggregate_id": gate, "execution_id": eid, "step_id": "a"}
        others += [
            c.PlanProposed(
                **at, aggregate_version=1, execution_id=eid, plan=PLAN, planner="saved",
                plan_ref={"name": "report", "version": 1, "chosen_by": "current"},
                occurred_at=next(clock),
            ),
            c.ExecutionStarted(**at, aggregate_version=1, plan=PLAN, occurred_at=next(clock)),
            c.ApprovalOpened(**gate_at, aggregate_version=1, tool="http.request",
                             input={"k": SEALED}, occurred_at=next(clock)),
            c.ApprovalGranted(**gate_at, aggregate_version=2, input={"k": SEALED},
                              original_input={"k": SEALED}, by=["ada"], actor="ada",
                              occurred_at=next(clock)),
            c.StepDispatched(**at, aggregate_version=2, attempt=1, **task, occurred_at=next(clock)),
            c.StepFailed(**at, aggregate_version=3, step_id="a", attempt=1, error="timed out",
                         occurred_at=next(clock)),
            c.StepDispatched(**at, aggregate_version=4, attempt=2, **task, occurred_at=next(clock)),
            c.StepSucceeded(**at, aggregate_version=5, step_id="a", attempt=2, duration_ms=25.5,
                            output={"model": "llama", "usage": {"input_tokens": 9}},
                            occurred_at=next(clock)),
            c.WorkspaceContextWritten(workspace_id="ws", aggregate_id=key, key="last",
                                      aggregate_version=i + 1, value={"run": i}, version=i + 1,
                                      written_by="a", execution_id=eid, occurred_at=next(clock)),
            c.ExecutionSucceeded(**at, aggregate_version=6, occurred_at=next(clock)),
        ]  # fmt: skip
    return gateway, others


def rows(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[Any]]:
    return {
        table: sorted(conn.execute(f"SELECT {columns} FROM {schema}.{table}").fetchall(), key=repr)
        for table, columns in TABLES.items()
    }


def histories(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    """Each execution's history in the order its page shows it."""
    return conn.execute(
        f"SELECT execution_id, array_agg(event_id ORDER BY seq) FROM {schema}.execution_events"
        " GROUP BY execution_id ORDER BY execution_id"
    ).fetchall()


def numbering(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    """Every history row's number: the live list reads across executions in its order, and a
    restore from the archive puts an execution's rows back at their numbers."""
    return conn.execute(
        f"SELECT seq, event_id FROM {schema}.execution_events ORDER BY seq"
    ).fetchall()


def stored(settings: Settings, events: list[Event]) -> dict[str, list[Event]]:
    """``events`` committed, each in its service's store; the stores' logs."""
    stores: dict[str, list[Event]] = {}
    for e in events:
        name = "gateway" if isinstance(e, c.ExecutionRequested) else "executor"
        stores.setdefault(STORE.get(e.type.split(".")[0], name), []).append(e)
    for name, logged in stores.items():
        store = PostgresEventStore(settings.database_url, name, schema=settings.db_schema)
        store.commit(Commit(events=logged))
        store.close()
    return stores


def fold_live(conn: psycopg.Connection[Any], views: list[Any], events: list[Event]) -> None:
    for first in range(0, len(events), 7):  # as the stream gives them, a few at a time
        with conn.transaction():
            for view in views:
                view.apply_batch(conn, events[first : first + 7])


def indexes(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    return conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (schema,)
    ).fetchall()


@pytest.mark.parametrize("workers", [1, 3])  # the one-process fold, and over processes
async def test_a_rebuild_from_the_stores_writes_what_the_live_projector_wrote(
    settings: Settings, bus: object, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    schema = settings.db_schema
    gateway_events, other_events = history(40)
    events = sorted(gateway_events + other_events, key=lambda e: e.occurred_at)
    *events, last = events  # the last execution's end comes after the rebuild
    assert isinstance(last, c.ExecutionSucceeded)
    stores = stored(settings, events)
    with open_views(settings) as conn:
        projection, access, approvals, extra = _views(schema)
        live = [projection, access, approvals, *extra]
        fold_live(conn, live, events)
        before, order, made = rows(conn, schema), histories(conn, schema), indexes(conn, schema)
        numbered = numbering(conn, schema)
        assert [n for n, _ in numbered] == list(range(1, len(numbered) + 1))
        assert len(before["executions"]) == 40 and len(before["tool_attempts"]) == 80
        assert SEALED not in repr(before["executions"]) + repr(before["approvals"])
        written = conn.execute(
            f"SELECT data->>'request' FROM {schema}.execution_events WHERE event_id = %s",
            (gateway_events[1].event_id,),
        ).fetchone()
        assert written == ('run 1\n\t\\ "1"',)  # the history row holds the event as it was

        def crash(*args: Any) -> None:
            raise RuntimeError("the rebuild's process died")

        # A rebuild that fails at its very end (every table emptied and written again, the
        # indexes dropped): the old views and their indexes serve as before.
        monkeypatch.setattr(main, "create_indexes", crash)
        with pytest.raises(RuntimeError):
            await main.rebuild(settings, workers=workers)
        assert (rows(conn, schema), indexes(conn, schema)) == (before, made)
        monkeypatch.undo()

        result = await main.rebuild(settings, workers=workers)
        assert result["read_from_stores"] == len(events)  # the stream held none: the stores
        assert rows(conn, schema) == before
        assert histories(conn, schema) == order
        assert numbering(conn, schema) == numbered  # the stream's order across executions too
        assert indexes(conn, schema) == made
        assert catchup.positions(conn, schema) == {k: len(v) for k, v in stores.items()}

        # The live projector goes on after the rebuild: its remembered views are from before
        stored(settings, [last])
        fold_live(conn, live, [last])
        after, numbered = rows(conn, schema), numbering(conn, schema)
    with open_views(settings) as conn:  # what folding the whole history live once gives
        projection, access, approvals, extra = _views(schema)
        fresh = [projection, access, approvals, *extra]
        with conn.transaction():
            for view in fresh:
                view.truncate(conn)
        fold_live(conn, fresh, [*events, last])
        assert rows(conn, schema) == after
        assert numbering(conn, schema) == numbered  # the live projector numbers on after it


@pytest.mark.parametrize("workers", [1, 2])
async def test_an_event_stored_twice_leaves_no_gap_in_the_history_numbers(
    settings: Settings, bus: object, workers: int
) -> None:
    """The workers write each history row at the number its place gave it; an event read
    twice (here: held by a second store) is numbered twice and written once, as the one
    process writes it: the numbers close up behind it, as the sequence gives them live."""
    schema = settings.db_schema
    gateway_events, other_events = history(8)
    events = sorted(gateway_events + other_events, key=lambda e: e.occurred_at)
    stored(settings, events)
    twice = next(e for e in events[20:] if isinstance(e, c.StepSucceeded))
    store = PostgresEventStore(settings.database_url, "replica", schema=schema)
    store.commit(Commit(events=[twice]))
    store.close()
    with open_views(settings) as conn:
        projection, access, approvals, extra = _views(schema)
        fold_live(conn, [projection, access, approvals, *extra], events)
        numbered = numbering(conn, schema)
        await main.rebuild(settings, workers=workers)
        assert numbering(conn, schema) == numbered


def shadow_schemas(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    return conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{schema}\\_re%",)
    ).fetchall()


async def test_a_worker_killed_midway_leaves_the_old_views_serving(
    settings: Settings, bus: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = settings.db_schema
    gateway_events, other_events = history(12)
    events = sorted(gateway_events + other_events, key=lambda e: e.occurred_at)
    stored(settings, events)
    reading = parallel.Pool.stores

    def killed(pool: parallel.Pool, *args: Any) -> Any:
        os.kill(pool.procs[1].pid, signal.SIGKILL)  # as the OOM killer would, mid-rebuild
        return reading(pool, *args)

    with open_views(settings) as conn:
        projection, access, approvals, extra = _views(schema)
        fold_live(conn, [projection, access, approvals, *extra], events)
        before, made = rows(conn, schema), indexes(conn, schema)
        monkeypatch.setattr(parallel.Pool, "stores", killed)
        with pytest.raises(RuntimeError, match="rebuild worker 1 died"):
            await main.rebuild(settings, workers=2)
        assert (rows(conn, schema), indexes(conn, schema)) == (before, made)
        assert shadow_schemas(conn, schema) == []  # dropped on the way out
        monkeypatch.undo()

        # A rebuild whose own process was killed leaves its shadows: the next drops them
        shadows.create_shadows(conn, schema, 3, main.create_tables, main.drop_indexes)
        assert len(shadow_schemas(conn, schema)) == 4
        await main.rebuild(settings, workers=2)
        assert shadow_schemas(conn, schema) == []
        assert (rows(conn, schema), indexes(conn, schema)) == (before, made)


async def test_readers_and_the_live_projector_go_on_while_the_workers_fold(
    settings: Settings, bus: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real tables are locked only for the swap: while the workers fold, a reader reads
    the old views and the live projector writes into them; what it wrote (committed after the
    workers' reading) is folded on top of the rebuilt views before they are swapped in."""
    schema = settings.db_schema
    gateway_events, other_events = history(10)
    events = sorted(gateway_events + other_events, key=lambda e: e.occurred_at)
    early, late = events[:60], events[60:]
    stored(settings, early)
    reading = parallel.Pool.stores
    seen: list[Any] = []

    with open_views(settings) as conn:
        projection, access, approvals, extra = _views(schema)
        live = [projection, access, approvals, *extra]
        fold_live(conn, live, early)
        old = conn.execute(f"SELECT count(*) FROM {schema}.executions").fetchone()

        def meanwhile(pool: parallel.Pool, *args: Any) -> Any:
            with psycopg.connect(settings.database_url, autocommit=True) as reader:
                reader.execute("SET lock_timeout = '5s'")  # a reader waiting on a lock fails
                seen.append(reader.execute(f"SELECT count(*) FROM {schema}.executions").fetchone())
            stored(settings, late)  # after the workers' positions were taken
            conn.execute("SET lock_timeout = '5s'")
            fold_live(conn, live, late)
            return reading(pool, *args)

        monkeypatch.setattr(parallel.Pool, "stores", meanwhile)
        result = await main.rebuild(settings, workers=2)
        assert seen == [old]
        assert result["read_from_stores"] == len(events)
        rebuilt = rows(conn, schema)
        with conn.transaction():
            for view in live:
                view.truncate(conn)
        fresh = [projection, access, approvals, *extra]
        fold_live(conn, fresh, events)
        assert rebuilt == rows(conn, schema)


def test_each_event_goes_to_the_worker_of_its_execution() -> None:
    """The routing reads the execution from the JSON as ``views.execution_id_of`` reads it
    from the typed event: an execution's events all meet in one worker, in their order."""
    from baton_common.views import execution_id_of

    gateway_events, other_events = history(30)
    parked = c.EventParked(
        workspace_id="ws", aggregate_id=uuid.uuid4(), aggregate_version=1,
        correlation_id=gateway_events[0].aggregate_id, parked_event_id=uuid.uuid4(),
        parked_type="execution.step_succeeded", position=7, size=2_000_000, reason="too large",
        relay="executor",
    )  # fmt: skip
    for e in [*gateway_events, *other_events, parked]:
        execution = execution_id_of(e)
        expected = execution.int % 3 if execution else 0
        assert parallel.part_of(e.to_json(), 3) == expected, e.type
        assert parallel.route(e.to_json(), 3) == (expected, execution is not None), e.type
    assert parallel.part_of(b"not json", 3) == 0
