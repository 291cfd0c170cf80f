"""Deleting a workspace: its events in every store (and their inbox rows), every read model row
that is its, and its archives; what was removed, by table."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from baton_common.archive import ArchiveStore
from baton_common.retention import TERMINAL, store_tables
from baton_common.startsnapshots import TABLE


class WorkspaceBusy(RuntimeError):
    """A workspace with executions still in flight is not deleted (cancel them first)."""


def _in_flight(conn: psycopg.Connection[Any], schema: str, workspace_id: str) -> int:
    row = conn.execute(
        SQL(
            "SELECT count(*) AS n FROM {s}.executions WHERE workspace_id = %s AND status <> ALL(%s)"
        ).format(s=Identifier(schema)),
        (workspace_id, list(TERMINAL)),
    ).fetchone()
    return int(row["n"]) if row else 0


def _tables_with(conn: psycopg.Connection[Any], schema: str, column: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t"
        " USING (table_schema, table_name) WHERE c.table_schema = %s AND c.column_name = %s"
        " AND t.table_type = 'BASE TABLE' ORDER BY c.table_name",
        (schema, column),
    ).fetchall()
    return [r["table_name"] for r in rows]


def delete_workspace(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, workspace_id: str
) -> dict[str, int]:
    """Remove everything of a workspace: its events in every store (and the inbox rows of
    them), every read model row, and its archives. Returns what was removed, by table.

    The archives go first: a crash after them leaves the workspace in place, and deleting it
    again finishes the job; the database's part is one transaction."""
    if n := _in_flight(conn, schema, workspace_id):
        raise WorkspaceBusy(
            f"workspace {workspace_id!r} has {n} executions in flight: cancel them first"
        )
    removed = {"archive objects": archive.delete_prefix(f"{workspace_id}/")}
    with conn.transaction():
        if n := _in_flight(conn, schema, workspace_id):  # one started meanwhile
            raise WorkspaceBusy(f"workspace {workspace_id!r} has {n} executions in flight")
        removed |= _erase_events(conn, schema, workspace_id)
        removed |= _erase_views(conn, schema, workspace_id)
    return {k: v for k, v in sorted(removed.items()) if v}


def _erase_events(conn: psycopg.Connection[Any], schema: str, workspace_id: str) -> dict[str, int]:
    """The workspace's events in every service's store, and the inbox rows of them."""
    removed: dict[str, int] = {}
    event_ids: list[str] = []
    for table in _tables_with(conn, schema, "originator_id"):  # every service's store
        rows = conn.execute(
            SQL(
                "DELETE FROM {s}.{t} WHERE convert_from(state, 'UTF8')::json->>'workspace_id'"
                " = %s RETURNING convert_from(state, 'UTF8')::json->>'event_id' AS id"
            ).format(s=Identifier(schema), t=Identifier(table)),
            (workspace_id,),
        ).fetchall()
        removed[table] = len(rows)
        event_ids += [r["id"] for r in rows]
    for inbox in store_tables(conn, schema, "_inbox"):
        removed[inbox] = _deleted(conn, schema, inbox, "message_id = ANY(%s)", event_ids)
    if TABLE in _tables_with(conn, schema, "position"):  # they hold every workspace's objects
        everything = SQL("DELETE FROM {s}.{t}").format(s=Identifier(schema), t=Identifier(TABLE))
        removed[TABLE] = conn.execute(everything).rowcount
    return removed


def _erase_views(conn: psycopg.Connection[Any], schema: str, workspace_id: str) -> dict[str, int]:
    """Every read model row of the workspace: by its id, or by the id of one of its executions."""
    executions = [
        r["id"]
        for r in conn.execute(
            SQL("SELECT id FROM {s}.executions WHERE workspace_id = %s").format(
                s=Identifier(schema)
            ),
            (workspace_id,),
        )
    ]
    removed: dict[str, int] = {}
    by_workspace = set(_tables_with(conn, schema, "workspace_id"))
    for table in _tables_with(conn, schema, "execution_id"):
        if table not in by_workspace:  # e.g. an execution's history, metrics bookkeeping
            removed[table] = _deleted(conn, schema, table, "execution_id = ANY(%s)", executions)
    for table in sorted(by_workspace):
        removed[table] = _deleted(conn, schema, table, "workspace_id = %s", workspace_id)
    for table in _tables_with(conn, schema, "workspace"):  # the executor's result cache
        removed[table] = _deleted(conn, schema, table, "workspace = %s", workspace_id)
    removed["workspaces"] = _deleted(conn, schema, "workspaces", "id = %s", workspace_id)
    return removed


def _deleted(conn: psycopg.Connection[Any], schema: str, table: str, where: str, arg: Any) -> int:
    cursor = conn.execute(
        SQL("DELETE FROM {s}.{t} WHERE " + where).format(s=Identifier(schema), t=Identifier(table)),
        (arg,),
    )
    return cursor.rowcount
