"""The smart cache: results of ``read`` tools reused for the same tool and input, for a while.

A tool opts in with ``cache_ttl_s`` in the catalogue (``BATON_CACHE_TTL="tool=seconds,…"``
overrides it per deployment; 0 turns a tool's cache off). ``write`` and ``critical`` tools are
never cached, whatever the settings say. A hit is recorded as the step's ``StepSucceeded`` with
``cached_from`` naming the step whose result it reuses, so a replay shows exactly what ran and
what was reused. The rows live in PostgreSQL beside the executor's events; a row is written when
a tool's result is taken in, before the commit: if that commit is lost, the row still holds a
genuine result of that tool for that input, which is all a cache promises.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.events import Event
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

# Exported as metrics: hits, misses, results stored, tool time and LLM tokens not spent.
STATS = {"hits": 0.0, "misses": 0.0, "stores": 0.0, "saved_ms": 0.0, "saved_tokens": 0.0}


def stat(name: str) -> float:
    return STATS[name]


@dataclass(frozen=True)
class Hit:
    """A cached result and where it came from (``<execution>:<step>``)."""

    output: Any
    source: str
    duration_ms: float = 0.0


class ResultCache(Protocol):
    """Where cached results live."""

    def lookup(self, workspace: str, tool: str, key: str, now: datetime) -> Hit | None: ...

    def put(self, workspace: str, tool: str, key: str, hit: Hit, expires_at: datetime) -> None: ...

    def clear(self, workspace: str, tool: str | None) -> int: ...


class NoCache:
    """Caches nothing (executions run without a store: unit tests, tools)."""

    def lookup(self, workspace: str, tool: str, key: str, now: datetime) -> Hit | None:
        return None

    def put(self, workspace: str, tool: str, key: str, hit: Hit, expires_at: datetime) -> None:
        pass

    def clear(self, workspace: str, tool: str | None) -> int:
        return 0


class MemoryCache:
    """In memory: for unit tests."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], tuple[Hit, datetime]] = {}

    def lookup(self, workspace: str, tool: str, key: str, now: datetime) -> Hit | None:
        found = self.rows.get((workspace, tool, key))
        return found[0] if found and found[1] > now else None

    def put(self, workspace: str, tool: str, key: str, hit: Hit, expires_at: datetime) -> None:
        self.rows[(workspace, tool, key)] = (hit, expires_at)

    def clear(self, workspace: str, tool: str | None) -> int:
        gone = [k for k in self.rows if k[0] == workspace and tool in (None, k[1])]
        for k in gone:
            del self.rows[k]
        return len(gone)


class StoreCache:
    """A table ``executor_tool_cache`` in the executor's PostgreSQL schema."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore
        self.table = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier("executor_tool_cache")
        )
        self._sql(
            "CREATE TABLE IF NOT EXISTS {t} (workspace text NOT NULL, tool text NOT NULL,"
            " key text NOT NULL, output jsonb, source text NOT NULL, duration_ms float8,"
            " expires_at timestamptz NOT NULL, PRIMARY KEY (workspace, tool, key))"
        )

    def _sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(statement).format(t=self.table), params)
            return curs.fetchall() if curs.description else []

    def lookup(self, workspace: str, tool: str, key: str, now: datetime) -> Hit | None:
        rows = self._sql(
            "SELECT output, source, duration_ms FROM {t} WHERE workspace = %s AND tool = %s"
            " AND key = %s AND expires_at > %s",
            (workspace, tool, key, now),
        )
        return Hit(rows[0]["output"], rows[0]["source"], rows[0]["duration_ms"]) if rows else None

    def put(self, workspace: str, tool: str, key: str, hit: Hit, expires_at: datetime) -> None:
        self._sql(
            "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (workspace, tool, key)"
            " DO UPDATE SET output = EXCLUDED.output, source = EXCLUDED.source,"
            " duration_ms = EXCLUDED.duration_ms, expires_at = EXCLUDED.expires_at",
            (workspace, tool, key, Jsonb(hit.output), hit.source, hit.duration_ms, expires_at),
        )

    def clear(self, workspace: str, tool: str | None) -> int:
        rows = self._sql(
            "WITH gone AS (DELETE FROM {t} WHERE workspace = %s AND (%s::text IS NULL OR tool = %s)"
            " RETURNING 1) SELECT count(*) AS n FROM gone",
            (workspace, tool, tool),
        )
        return int(rows[0]["n"])


def ttl_overrides(text: str | None = None) -> dict[str, float]:
    """``BATON_CACHE_TTL="llm.generate=600,files.read=0"`` as a dict (bad entries: ValueError)."""
    text = os.environ.get("BATON_CACHE_TTL", "") if text is None else text
    found: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        tool, sep, seconds = part.partition("=")
        if not sep or float(seconds) < 0:
            raise ValueError(f"BATON_CACHE_TTL: {part!r} is not tool=seconds (seconds ≥ 0)")
        found[tool.strip()] = float(seconds)
    return found


_OVERRIDES = ttl_overrides()


def cache_ttl(tool: str) -> float | None:
    """How long a result of ``tool`` may be reused; None: never."""
    spec = DEFAULT_CATALOGUE.get(tool)
    if spec is None or spec.side_effect != "read":
        return None
    ttl = _OVERRIDES.get(tool, spec.cache_ttl_s)
    return ttl if ttl else None


def tokens_of(output: Any) -> float:
    """The tokens an LLM tool's result cost (its ``usage``), which a cache hit does not spend."""
    usage = output.get("usage") if isinstance(output, dict) else None
    if not isinstance(usage, dict):
        return 0.0
    return float(usage.get("input_tokens") or 0) + float(usage.get("output_tokens") or 0)


def input_key(tool_input: dict[str, Any]) -> str:
    """The normalised input: canonical JSON (sorted keys, no spaces), hashed."""
    text = json.dumps(tool_input, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class CachedResults:
    """The Execution aggregate's side of the cache: use a hit at dispatch, offer results."""

    id: UUID
    sid: str  # str(id), formatted once (domain.py)

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)  # type: ignore[call-arg]
        self.results: ResultCache = NoCache()  # set by the application; a rebuild never asks
        self.cacheable: dict[str, tuple[str, dict[str, Any]]] = {}  # step -> (tool, input) run

    def _step_succeeds(self, step_id: str, attempt: int, output: Any, **extra: Any) -> None:
        raise NotImplementedError

    def _workspace(self) -> str:
        raise NotImplementedError

    def _simulated(self) -> bool:
        """A dry run, mock or replay (the aggregate's ``simulation``) neither reads nor fills
        the cache: what it runs must be what it would run for real."""
        return getattr(self, "simulation", None) is not None

    def cached_step(
        self, step_id: str, tool: str, tool_input: dict[str, Any], attempt: int, now: datetime
    ) -> bool:
        """Finish the step with a cached result, if there is a fresh one."""
        if cache_ttl(tool) is None or self._simulated():
            return False
        hit = self.results.lookup(self._workspace(), tool, input_key(tool_input), now)
        if hit is None:
            STATS["misses"] += 1
            return False
        STATS["hits"] += 1
        STATS["saved_ms"] += hit.duration_ms
        STATS["saved_tokens"] += tokens_of(hit.output)
        self._step_succeeds(step_id, attempt, hit.output, cached_from=hit.source)
        return True

    def offer_results(self, events: list[Event], now: datetime) -> None:
        """Store the results these events took in from cacheable tools."""
        if self._simulated():
            return  # a dry run's stand-in outputs are not results of the tool
        for e in events:
            if not isinstance(e, c.StepSucceeded) or e.kind != "run" or e.cached_from:
                continue
            call = self.cacheable.get(e.step_id)
            ttl = cache_ttl(call[0]) if call else None
            if call is None or ttl is None:
                continue
            hit = Hit(e.output, f"{self.sid}:{e.step_id}", e.duration_ms)
            self.results.put(
                self._workspace(), call[0], input_key(call[1]), hit, now + timedelta(seconds=ttl)
            )
            STATS["stores"] += 1

    def track_calls(self, event: Event) -> None:
        if not isinstance(event, c.StepDispatched | c.StepSucceeded) or event.kind != "run":
            return
        call = c.call_of(event)  # a task, or a pure step's one event
        if call is None:
            return
        if cache_ttl(call.tool) is not None:
            self.cacheable[event.step_id] = (call.tool, dict(call.input))
        else:
            self.cacheable.pop(event.step_id, None)
