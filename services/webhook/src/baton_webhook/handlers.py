"""Bus subscribers of the webhook service: events in, deliveries (and their timers) out.

Subscriptions are few: the list is kept in memory. For each batch of events, one cheap look at
the store's last position tells whether anything was committed there since the list was read
(a subscription made, changed or ended, by this process or another replica): only then is it
read again, and at the latest every ``SUBS_TTL_S``. Events that came after a subscription's
commit are received after it, so the look sees that commit: none of them is missed. A plan
filter needs the execution's plan name: it comes from the plan events seen, else from the
executions read model.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.consumer import Consumer, Delivery
from baton_common.events import Event
from baton_common.service import Runtime
from baton_common.store import Commit, PostgresEventStore, run_sync
from nats.aio.msg import Msg
from psycopg.sql import SQL, Identifier

from baton_webhook.application import WebhookApp
from baton_webhook.domain import Subscription

log = logging.getLogger(__name__)
SUBJECTS = ["*.execution.>", "*.plan.>", "*.approval.>", "*.webhook.received"]
SUBS_TTL_S = 2.0
PLAN_NAMES = 10_000


class Subscriptions:
    """Every live subscription (all workspaces), re-read now and then."""

    def __init__(self, app: WebhookApp) -> None:
        self.app = app
        self.items: list[Subscription] = []
        self.read_at = float("-inf")
        self.read_position = -1  # the store's last position when the list was read

    def invalidate(self) -> None:
        self.read_at = float("-inf")
        self.read_position = -1

    async def for_batch(self) -> list[Subscription]:
        """The list as of now: read again only if the store moved since the last read (the
        position is taken first, so a commit made during the read is read again next time)."""
        position = await self.app.store.max_position_async()
        if position != self.read_position or time.monotonic() - self.read_at > SUBS_TTL_S:
            items = await run_sync(self.app.list_subscriptions, None, 10_000)
            self.items = [s for s in items if s.active]
            self.read_at, self.read_position = time.monotonic(), position
        return self.items


class PlanNames:
    """Execution id → plan name: from the plan events seen (bounded), else the read model."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.names: OrderedDict[UUID, str | None] = OrderedDict()

    def learn(self, event: Event) -> None:
        if isinstance(event, c.PlanProposed):
            self._keep(event.execution_id, event.plan.get("name"))
        elif isinstance(event, c.ExecutionStarted):
            self._keep(event.aggregate_id, event.plan.get("name"))

    def _keep(self, execution_id: UUID, name: Any) -> None:
        self.names[execution_id] = str(name) if name else None
        while len(self.names) > PLAN_NAMES:
            self.names.popitem(last=False)

    def __call__(self, event: Event) -> str | None:
        execution_id = getattr(event, "execution_id", None) or event.correlation_id
        if execution_id is None:
            return None
        if execution_id not in self.names:
            self._keep(execution_id, self._read_model(execution_id))
        return self.names[execution_id]

    def _read_model(self, execution_id: UUID) -> str | None:
        if not isinstance(self.store, PostgresEventStore):
            return None
        query = SQL("SELECT view->'plan'->>'name' AS name FROM {s}.executions WHERE id = %s")
        try:
            with self.store.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(
                    query.format(s=Identifier(self.store.datastore.schema)), (execution_id,)
                )
                row = curs.fetchone()
        except Exception:  # no read model (yet): the filter sees no plan name
            return None
        return str(row["name"]) if row and row["name"] else None


def webhook_consumer(runtime: Runtime, app: WebhookApp, subs: Subscriptions) -> Consumer:
    assert runtime.store is not None
    plans = PlanNames(runtime.store)

    def handle(batch: list[Delivery]) -> Commit:
        events = [d.event for d in batch]
        for event in events:
            plans.learn(event)
        current = subs.items  # as read for this batch by ``wanted``
        if not current:
            return Commit()
        return app.deliveries_for(events, current, plans)

    async def wanted(msgs: Sequence[Msg]) -> set[int]:
        """Only events of workspaces with a subscription are decoded and matched: most
        workspaces have none, and then an event costs an ack, not a decode."""
        current = await subs.for_batch()
        workspaces = {s.workspace_id for s in current}
        return {i for i, m in enumerate(msgs) if runtime.bus.workspace_of(m.subject) in workspaces}

    async def on_messages(batch: list[Delivery]) -> Commit:
        return await run_sync(handle, batch)  # loads from the store: off the loop

    return Consumer(
        runtime.bus,
        runtime.store,
        "webhook",
        SUBJECTS,
        on_messages,
        batch=500,
        relay=runtime.relay,
        deliver_new_only=True,  # a new deployment does not walk the whole history
        # Most events match no subscription: nothing to commit, not even inbox rows (an event
        # seen again is matched again; a delivery's id is derived, so it is never made twice).
        record_empty=False,
        linger_s=0.1,  # outbound deliveries are off the latency path: batch them
        wanted=wanted,
    )
