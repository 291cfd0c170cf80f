"""A consumer the stream left behind reads what it missed from the stores.

The stream keeps messages for a while (``BATON_STREAM_MAX_AGE``, ``BATON_STREAM_MAX_BYTES``);
PostgreSQL keeps every event. A consumer stopped for longer (or that fell that far behind) finds
the stream starting after the last message it was given (``Consumer.check_gap``): the messages in
between are gone from the stream, not from the stores. ``StoreRecovery`` then reads every store's
log after the positions the consumer had got to, keeps the events its subjects match, and hands
them to its handler as if the stream had delivered them, through the same inbox: an event it had
handled already is skipped, so reading one twice is harmless and missing one is not possible.

Where it had got to: each message a relay publishes says its store and position (``Baton-Source``);
the highest ones of handled messages are saved every ``SAVE_EVERY_S`` seconds, busy or idle (an
idle consumer's positions must not fall behind what its inbox remembers), as they stood one save
earlier (a relay of another replica may publish an event of its store a little after a later one
of another: reading from a little before is only a few inbox look-ups). A store of which the
consumer has saved nothing yet is read from its start, keeping the events younger than the inbox
keeps its rows (``BATON_INBOX_KEEP``): older ones were handled before they could be dropped, or
their inbox rows could not tell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from baton_common.catchup import Entry, last_positions, read_after, seen_in, stores
from baton_common.catchup import subject_matcher as matcher
from baton_common.consumer import Consumer, Delivery
from baton_common.events import Event
from baton_common.settings import Settings
from baton_common.store import PostgresEventStore, run_sync
from baton_common.telemetry import context_from

log = logging.getLogger(__name__)
SAVE_EVERY_S = 30.0
BATCH = 500


class StoreRecovery:
    """Gives ``consumer`` an ``on_gap`` that reads what it missed from the stores' logs."""

    def __init__(
        self,
        consumer: Consumer,
        store: PostgresEventStore,
        settings: Settings,
        keep_s: float,
        then: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.consumer, self.store, self.settings = consumer, store, settings
        self.then = then  # what else the consumer makes up for after a gap (its own losses)
        self.keep_s = keep_s  # how long the inbox remembers a handled message
        root = settings.subject_root
        self.wanted = matcher(root, [s.removeprefix(f"{root}.") for s in consumer.subjects])
        self.seen: dict[str, int] = {}  # of messages handled since the last save
        self.saving: dict[str, int] = {}  # as they stood at the last save: saved at the next
        self.saved: dict[str, int] = {}  # written by this process
        self._saved_at = time.monotonic()
        self._unknown: set[str] = set()  # stores of which nothing was saved: read from the start
        consumer.on_gap = self.on_gap
        consumer.on_handled = self.on_handled

    def key(self, store: str) -> str:
        """Its row among the store's positions (the relay's table: one position per name)."""
        return f"{self.consumer.name}@{store}"

    async def on_handled(self, deliveries: Sequence[Delivery]) -> None:
        for store, position in seen_in(deliveries).items():
            self.seen[store] = max(self.seen.get(store, 0), position)
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._saved_at = time.monotonic()
            saving, self.saving = self.saving, dict(self.seen)
            await run_sync(self.save, saving)

    def save(self, positions: dict[str, int]) -> None:
        for store, position in positions.items():
            if position > self.saved.get(store, 0):  # an idle consumer writes nothing
                self.store.set_relay_position(self.key(store), position)
                self.saved[store] = position

    async def on_gap(self) -> int:
        """Hand the consumer every event of its subjects after its saved positions; how many
        it handled."""
        started = datetime.now(UTC)
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            chunks = await run_sync(self._chunks, conn)
            handled = 0
            while chunk := await run_sync(next, chunks, None):
                since = started - timedelta(seconds=self.keep_s)
                deliveries = [_delivery(e) for _, s, _, e in chunk if self._wanted(s, e, since)]
                await self.consumer.replay(deliveries)
                await run_sync(self.save, last_positions(chunk))
                handled += len(deliveries)
        log.info("consumer %s: %d events read from the stores", self.consumer.name, handled)
        if self.then is not None:
            await self.then()
        return handled

    def _chunks(self, conn: psycopg.Connection[Any]) -> Iterator[list[Entry]]:
        after = {s: self.store.relay_position(self.key(s)) for s in stores(conn, self._schema)}
        self._unknown = {s for s, p in after.items() if p == 0}
        return read_after(conn, self._schema, after, BATCH)

    @property
    def _schema(self) -> str:
        return self.settings.db_schema

    def _wanted(self, store: str, event: Event, since: datetime) -> bool:
        """Of its subjects; from a log read from its start, only what the inbox can tell."""
        return self.wanted(event) and (store not in self._unknown or event.occurred_at >= since)


def _delivery(event: Event) -> Delivery:
    trace = {"traceparent": event.traceparent} if event.traceparent else None
    return Delivery(event, None, context_from(trace))


def recovering(consumer: Consumer, settings: Settings, keep_s: float) -> None:
    """Give a consumer with a PostgreSQL store and no recovery of its own ``StoreRecovery``."""
    if consumer.on_gap is None and isinstance(consumer.store, PostgresEventStore):
        StoreRecovery(consumer, consumer.store, settings, keep_s)
