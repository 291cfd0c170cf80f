"""Read models in PostgreSQL: executions (list + detail view) and their event history.

Applying a batch is one transaction: events already in the history (by event id) are skipped,
so redelivery and a concurrent rebuild never count an event twice. A rebuild truncates and
replays the whole stream inside one transaction that locks the tables, so readers and the live
projector see either the old views or the new ones, never a half-built state.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import orjson
import psycopg
from baton_common.events import Event
from baton_common.readmodels import create_tables  # noqa: F401  (re-exported for callers)
from baton_common.sealing import PREFIX
from baton_common.store import json_text, plain_text
from baton_common.views import TERMINAL, View, apply, execution_id_of
from psycopg.sql import SQL, Identifier

from baton_projector import bulk

# The views kept between batches, as the JSON they were written with, up to this many bytes
# (issue 32): a burst of 20,000 submissions kept up to 20,000 views of executions not yet
# started here as Python objects (about 5 KB each, in pymalloc's arenas, which stayed at that
# peak after the executions parked). As JSON text a view is a fifth of that, one block that
# goes back to the C heap when dropped, and it is decoded again in microseconds.
VIEWS_KEPT_BYTES = 8 << 20
_EXECUTION_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz", "timestamptz", "jsonb")
_EXECUTION_UPSERT = (
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, request = EXCLUDED.request,"
    " idempotency_key = EXCLUDED.idempotency_key, updated_at = EXCLUDED.updated_at,"
    " view = EXCLUDED.view"
)


class ExecutionProjection:
    """Folds execution events into the ``executions`` and ``execution_events`` tables."""

    def __init__(
        self, schema: str, cache_size: int = 20_000, cache_bytes: int = VIEWS_KEPT_BYTES
    ) -> None:
        self.s = Identifier(schema)
        self.applied = 0
        # Views of recent executions, as last written. Safe because one projector leads at a
        # time; a rebuild bumps the generation, which empties it; a failed write forgets it.
        self.cache: OrderedDict[UUID, bytes] = OrderedDict()  # each view's JSON
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self._kept_bytes = 0
        self.generation: int | None = None
        # A parallel rebuild's worker numbers the history rows it writes (``seq``) by their
        # place in the stream, given by event id; None: the table's sequence numbers them as
        # they are written (the live projector, the one-process rebuild: in the stream's order).
        self.numbers: dict[UUID, int] | None = None

    def forget(self) -> None:
        self._clear()
        self.generation = None

    def _clear(self) -> None:
        self.cache.clear()
        self._kept_bytes = 0

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        """Apply events in order inside the caller's transaction; returns how many were new."""
        # Each event with its execution, found once (a rebuild folds millions)
        relevant = [(e, x) for e in events if (x := execution_id_of(e)) is not None]
        if not relevant:
            return 0
        # Take both tables' locks first, in the order a rebuild takes them: without this a
        # batch holding one (by reading it) and waiting for the other deadlocks with a rebuild.
        conn.execute(
            SQL("LOCK TABLE {s}.executions, {s}.execution_events IN ROW EXCLUSIVE MODE").format(
                s=self.s
            )
        )
        seen = self._seen(conn, [e.event_id for e, _ in relevant])
        fresh: list[tuple[Event, UUID]] = []
        for e, x in relevant:
            if e.event_id not in seen:
                seen.add(e.event_id)
                fresh.append((e, x))
        if not fresh:
            return 0
        by_execution: dict[UUID, list[Event]] = defaultdict(list)
        for e, x in fresh:
            by_execution[x].append(e)
        self._check_generation(conn)
        missing = [i for i in by_execution if i not in self.cache]
        views = {i: orjson.loads(self.cache[i]) for i in by_execution if i in self.cache}
        views.update(self._load(conn, missing) if missing else {})
        # An archived execution's history is in the archive: a late or redelivered event of
        # it (the stream keeps events longer than the store) must not grow its summary back.
        for gone in [i for i, v in views.items() if v and "archived_at" in v]:
            del by_execution[gone]
            fresh = [(e, x) for e, x in fresh if x != gone]
        if not by_execution:
            return 0
        # Each event's JSON once: its history row, and whether it holds a sealed value at all
        texts = {e.event_id: e.model_dump_json() for e, _ in fresh}
        for execution_id, evs in by_execution.items():
            view = views.get(execution_id)
            for e in evs:
                view = apply(view, e, in_place=True, plain=PREFIX not in texts[e.event_id])
            views[execution_id] = view  # type: ignore[assignment]
        docs = self._save(conn, {i: views[i] for i in by_execution}, fresh, texts)
        self._remember(views, docs)
        self.applied += len(fresh)
        return len(fresh)

    def _check_generation(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            SQL("SELECT generation FROM {s}.projection_state WHERE name = 'executions'").format(
                s=self.s
            )
        ).fetchone()
        generation = int(row[0]) if row else 0
        if generation != self.generation:
            self._clear()
            self.generation = generation

    def _remember(self, views: dict[UUID, View], docs: dict[UUID, bytes | None]) -> None:
        for execution_id, view in views.items():
            self._kept_bytes -= len(self.cache.pop(execution_id, b""))
            doc = docs.get(execution_id)
            # A view that ended or waits is not kept: what comes next reads the table (the
            # soak: 16 KB per execution kept), as it does for one without JSON of its own here.
            if doc is None or view.get("status") in TERMINAL or _parked(view):
                continue
            self.cache[execution_id] = doc
            self._kept_bytes += len(doc)
        while self.cache and (
            len(self.cache) > self.cache_size or self._kept_bytes > self.cache_bytes
        ):
            self._kept_bytes -= len(self.cache.popitem(last=False)[1])

    def _seen(self, conn: psycopg.Connection[Any], ids: list[UUID]) -> set[UUID]:
        rows = conn.execute(
            SQL(
                "SELECT event_id FROM {s}.execution_events WHERE event_id = ANY(%s::uuid[])"
            ).format(s=self.s),
            (bulk.uuids(ids),),
        ).fetchall()
        return {r[0] for r in rows}

    def _load(self, conn: psycopg.Connection[Any], ids: list[UUID]) -> dict[UUID, View]:
        rows = conn.execute(
            SQL("SELECT id, view FROM {s}.executions WHERE id = ANY(%s::uuid[]) FOR UPDATE").format(
                s=self.s
            ),
            (bulk.uuids(ids),),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def _save(
        self,
        conn: psycopg.Connection[Any],
        views: dict[UUID, View],
        events: list[tuple[Event, UUID]],
        texts: dict[UUID, str],
    ) -> dict[UUID, bytes | None]:
        """Write the views and the events' history rows; each view's JSON (None: orjson
        refused it, an integer beyond 64 bits, and psycopg's encoder wrote it with ``json``)."""
        docs = {i: _encoded(v) for i, v in views.items()}
        values: dict[UUID, Any] = {
            i: orjson.Fragment(doc) if doc else views[i] for i, doc in docs.items()
        }
        if None in docs.values():  # the rows' encoder falls back to json, which takes no Fragment
            values = views
        bulk.insert(
            conn,
            SQL("{s}.executions (id, workspace_id, status, request, idempotency_key, created_at,"
                " updated_at, view)").format(s=self.s),
            _EXECUTION_TYPES,
            [
                (v["id"], v["workspace_id"], v["status"], plain_text(v["request"]),
                 v["idempotency_key"], v["created_at"], v["updated_at"], values[i])
                for i, v in views.items()
            ],
            _EXECUTION_UPSERT,
        )  # fmt: skip
        columns = "execution_id, event_id, type, occurred_at, data"
        lead = [""] * len(events)
        if self.numbers is not None:
            columns, lead = f"seq, {columns}", self._numbered(events)
        with conn.cursor() as cur:
            with cur.copy(
                SQL("COPY {s}.execution_events ({c}) FROM STDIN").format(s=self.s, c=SQL(columns))
            ) as copy:
                copy.write(
                    "".join(
                        f"{n}{execution_id}\t{e.event_id}\t{e.type}\t{e.occurred_at.isoformat()}"
                        f"\t{bulk.copy_text(json_text(texts[e.event_id]))}\n"
                        for n, (e, execution_id) in zip(lead, events, strict=True)
                    )
                )  # rows as COPY's text: psycopg's write_row formats each value in Python
        return docs

    def _numbered(self, events: list[tuple[Event, UUID]]) -> list[str]:
        """Each history row's number, as COPY's first column."""
        numbers = self.numbers or {}
        try:
            return [f"{numbers[e.event_id]}\t" for e, _ in events]
        except KeyError as missing:  # the rebuild's routing and ``execution_id_of`` disagree
            raise RuntimeError(f"event {missing} has a history row and no number") from None

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            SQL("LOCK TABLE {s}.executions, {s}.execution_events IN ACCESS EXCLUSIVE MODE").format(
                s=self.s
            )
        )
        conn.execute(
            SQL("TRUNCATE {s}.executions, {s}.execution_events RESTART IDENTITY").format(s=self.s)
        )
        conn.execute(  # tells the live projector its remembered views are from before
            SQL(
                "UPDATE {s}.projection_state SET generation = generation + 1 WHERE name = 'executions'"
            ).format(s=self.s)
        )
        self.forget()


def _encoded(view: View) -> bytes | None:
    """A view's JSON, encoded here once: written as an ``orjson.Fragment`` that the row's
    encoder copies as it is, and kept. None where orjson refuses it (an integer beyond 64 bits:
    its reader would turn it into a float)."""
    try:
        return orjson.dumps(view, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return None


def _parked(view: View) -> bool:
    """It waits for a person (a gate, the planner's question) or a timer (a sleep), nothing of
    it at a worker: 10,000 such would otherwise hold 10,000 views in this process. (Between two
    commits of a chain, with no step running and none waiting, it stays: its next events come
    at once.)"""
    status = view.get("status")
    if status == "waiting":
        return True
    if status not in ("running", "paused"):
        return False
    waits = False
    for step in view.get("steps", {}).values():
        sleeping = step["status"] == "running" and step["tool"] == "time.sleep"
        if step["status"] == "running" and not sleeping:
            return False
        waits = waits or sleeping or step["status"] == "waiting_approval"
    return waits
