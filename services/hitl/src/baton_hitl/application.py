"""The hitl application: load gates, hand them requests, decisions and deadlines; collect what to
commit.

Gates are few and small (people decide them), so each is loaded from the store every time it is
touched: there is no cache to go stale between replicas, and the store's version check settles
any race (a decision against a deadline, two replicas against one request).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from baton_common import contracts as c
from baton_common.approvals import (
    MAX_QUESTIONS,
    DecisionRequest,
    approval_id_for,
    question_id_for,
)
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.consumer import Delivery
from baton_common.errors import NotFound
from baton_common.store import (
    Commit,
    MemoryEventStore,
    PostgresEventStore,
    Timer,
    clearing_fired,
    gathered,
)
from psycopg.sql import SQL, Identifier

from baton_hitl.domain import Approval

log = logging.getLogger(__name__)

# A gate whose last event is one of these is still waiting for a decision.
OPEN_AFTER = (c.ApprovalOpened.TYPE, c.ApprovalVoted.TYPE, c.ApprovalEscalated.TYPE)
SUBJECTS = [
    "*.execution.approval_requested",
    "*.execution.step_cancelled",
    "*.plan.question_asked",
    "*.execution.cancelled",  # a question about it closes unanswered
]


class HitlApp:
    """Opens gates, takes decisions, and acts on deadlines: each an ``Approval``'s events."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        # sum, count: gates a person's decision closed in this process, from opening to decision
        self.decision_seconds = [0.0, 0]

    def load(self, approval_id: UUID) -> Approval | None:
        return Approval.rebuild(approval_id, self.store.load(approval_id))

    # --- the consumer -----------------------------------------------------------------------------

    def handle(self, deliveries: list[Delivery], now: datetime | None = None) -> Commit:
        """Open requested gates; close the gates of cancelled steps."""
        now = now or datetime.now(UTC)
        touched: dict[UUID, Approval] = {}  # a gate seen twice in one batch is one object
        for delivery in deliveries:
            event = delivery.event
            if isinstance(event, c.StepApprovalRequested):
                self._open(event, touched, now)
            elif isinstance(event, c.StepCancelled):
                self._cancel(event, touched)
            elif isinstance(event, c.PlanQuestionAsked):
                self._ask(event, touched, now)
            elif isinstance(event, c.ExecutionCancelled):
                self._unask(event, touched)
        return gathered(touched.values())

    def _gate(self, approval_id: UUID, touched: dict[UUID, Approval]) -> Approval | None:
        if approval_id not in touched:
            found = self.load(approval_id)
            if found is None:
                return None
            touched[approval_id] = found
        return touched[approval_id]

    def _open(
        self, event: c.StepApprovalRequested, touched: dict[UUID, Approval], now: datetime
    ) -> None:
        if self._gate(event.approval_id, touched) is not None:
            log.info("gate %s is already open or decided: request ignored", event.approval_id)
            return
        gate = touched[event.approval_id] = Approval(event.approval_id)
        gate.open(event, now)
        log.info(
            "gate %s opened for step %s of %s (%s)",
            gate.id,
            gate.step_id,
            gate.execution_id,
            gate.tool,
        )

    def _ask(
        self, event: c.PlanQuestionAsked, touched: dict[UUID, Approval], now: datetime
    ) -> None:
        if self._gate(event.approval_id, touched) is not None:
            return  # asked already (a redelivery)
        gate = touched[event.approval_id] = Approval(event.approval_id)
        gate.ask(event, now)
        log.info("question %s opened for %s", gate.id, gate.execution_id)

    def _unask(self, event: c.ExecutionCancelled, touched: dict[UUID, Approval]) -> None:
        """The execution was cancelled while the planner asked about it: the question closes."""
        for round_ in range(1, MAX_QUESTIONS + 1):
            gate = self._gate(question_id_for(event.aggregate_id, round_), touched)
            if gate is None:
                return  # no question this round, so none after it
            if gate.status == "pending":
                gate.cancel(event.reason or "the execution was cancelled", event)

    def _cancel(self, event: c.StepCancelled, touched: dict[UUID, Approval]) -> None:
        gate_id = event.approval_id or approval_id_for(event.aggregate_id, event.step_id)
        gate = self._gate(gate_id, touched)
        if gate is not None and gate.status == "pending":
            gate.cancel(event.reason, event)
            log.info("gate %s cancelled: %s", gate.id, event.reason)

    # --- decisions --------------------------------------------------------------------------------

    def decide(
        self, request: DecisionRequest, now: datetime | None = None
    ) -> tuple[Commit, Approval]:
        """The commit a person's decision makes, and the gate after it; raises a ServiceError
        (403, 404, 409, 422) when the gate does not take it."""
        gate = self.load(_uuid(request.approval_id))
        if gate is None:
            raise NotFound(f"no approval {request.approval_id}")
        gate.decide(request, now or datetime.now(UTC), self.catalogue)
        return gathered([gate]), gate

    # --- deadlines --------------------------------------------------------------------------------

    def fire(self, timers: list[Timer], now: datetime | None = None) -> Commit:
        """Act on due deadlines; every fired timer is cleared in the same commit."""
        now = now or datetime.now(UTC)
        touched: dict[UUID, Approval] = {}
        for timer in timers:
            gate = self._gate(UUID(timer.payload["approval_id"]), touched)
            if gate is not None:
                gate.deadline_passed(int(timer.payload["deadline"]), now)
                if gate.pending:
                    log.info("gate %s: no decision by its deadline: %s", gate.id, gate.status)
        return clearing_fired(gathered(touched.values()), timers)

    # --- metrics --------------------------------------------------------------------------------

    def decided(self, gate: Approval) -> None:
        """A person's decision closed ``gate`` (committed): count how long it waited."""
        if gate.status in ("granted", "rejected") and gate.opened_at and gate.decided_at:
            self.decision_seconds[0] += (gate.decided_at - gate.opened_at).total_seconds()
            self.decision_seconds[1] += 1

    def pending_count(self) -> int:
        """Open gates in the store (every replica's): those whose last event leaves them open."""
        if not isinstance(self.store, PostgresEventStore):
            return 0  # unit tests only
        query = SQL(
            "SELECT count(*) AS n FROM (SELECT DISTINCT ON (originator_id) topic FROM {s}.{t}"
            " ORDER BY originator_id, originator_version DESC) last WHERE topic = ANY(%s)"
        ).format(
            s=Identifier(self.store.datastore.schema),
            t=Identifier(self.store.recorder.events_table_name),
        )
        with self.store.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(query, (list(OPEN_AFTER),))
            row = curs.fetchone()
        return int(row["n"]) if row else 0


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"no approval {value}") from None
