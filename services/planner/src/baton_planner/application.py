"""The planner application: a request becomes a validated plan (or a clear failure), once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.approvals import QUESTION_GATE
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.consumer import Delivery
from baton_common.events import Event
from baton_common.planhooks import PlanVetoed, run_before_plan, run_plan_hooks
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.store import Commit, MemoryEventStore, PostgresEventStore
from baton_common.workspaces import WorkspacePolicy, policy_problems

from baton_planner.domain import PlanRecord
from baton_planner.extensions import EndHooks, StatsFeed, order_alternatives
from baton_planner.learning import Learner
from baton_planner.library import PlanLibrary
from baton_planner.offline.explaining import PlanRefused
from baton_planner.planners import Answer, Planner, PlanningError
from baton_planner.questions import QuestionSettings, ask, wordings
from baton_planner.reuse import LEARNING_SUBJECTS, learn_from, plan_or_reuse
from baton_planner.saved import SavedPlanError

log = logging.getLogger(__name__)
GIVEN_KEPT = 20_000  # as many as the learner keeps step tools for

SUBJECTS = [
    "*.execution.requested",
    "*.execution.succeeded",
    *LEARNING_SUBJECTS,
    "*.execution.failed",  # for plugins' on_execution_end
    "*.execution.cancelled",
    "*.approval.answered",  # the person's answer to a question: plan again with it
    "*.approval.rejected",  # a question declined, or unanswered by its deadline
]
Reply = c.ApprovalAnswered | c.ApprovalRejected  # to one of the planner's questions


class PlannerApp:
    """Plans requests with the configured planner; direct plans are validated and passed on."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        planner: Planner,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        policy_of: Callable[[str], WorkspacePolicy] | None = None,
        stats_feed: StatsFeed | None = None,
        library: PlanLibrary | None = None,
        learner: Learner | None = None,
        questions: QuestionSettings | None = None,
    ) -> None:
        self.store = store
        self.library = library or PlanLibrary(store, catalogue)  # saved plans, run by name
        self.learner = learner  # plan reuse and learning (learning.py); None: off
        self.planner = planner
        self.questions = questions or QuestionSettings()  # a refusal asks the person (or fails)
        self.catalogue = catalogue
        self.policy_of = policy_of  # the workspace's tool allow/deny lists (None: allow all)
        self.stats_feed = stats_feed  # the agent registry's figures per tool (None: none)
        self.end_hooks = EndHooks(policy_of)
        self.check_store_until = 0.0
        self.planned: dict[UUID, None] = {}  # executions this process planned (insertion-ordered)
        # Executions that came with their plan (the latest GIVEN_KEPT): nothing to learn from
        # their end, so their history is not read for it.
        self.given: OrderedDict[UUID, None] = OrderedDict()

    async def handle(self, deliveries: list[Delivery]) -> Commit:
        # A plan given directly skips the planner: the executor takes it as it is.
        requests = [
            d.event
            for d in deliveries
            if isinstance(d.event, c.ExecutionRequested) and d.event.plan is None
        ]
        answers = [e for d in deliveries if (e := _question_answer(d.event)) is not None]
        outcomes = await asyncio.gather(
            *(self._plan(r) for r in requests), *(self._answered(a) for a in answers)
        )
        for d in deliveries:
            self.end_hooks.ended(d.event)
            if isinstance(d.event, c.ExecutionRequested) and d.event.plan is not None:
                self._given(d.event.aggregate_id)
            elif isinstance(d.event, c.ExecutionSucceeded) and d.event.aggregate_id in self.planned:
                await asyncio.to_thread(self._learn, d.event)
        learned = await learn_from(self, deliveries) if self.learner else []
        return Commit(events=[e for e in outcomes if e is not None] + learned)

    def _given(self, execution_id: UUID) -> None:
        self.given[execution_id] = None
        while len(self.given) > GIVEN_KEPT:
            self.given.popitem(last=False)

    def invalidate(self) -> None:
        """A commit conflicted (a plan already exists): check the store for a while."""
        self.check_store_until = time.monotonic() + 10

    async def _plan(self, request: c.ExecutionRequested) -> Event | None:
        # The inbox already drops redelivered messages; a second request message for the same
        # execution is caught by the store's version check, and then we look before planning.
        if time.monotonic() < self.check_store_until:
            if await asyncio.to_thread(self.store.load, request.aggregate_id):
                return None
        record = PlanRecord(request.aggregate_id)
        envelope: dict[str, Any] = request.caused(correlation_id=request.aggregate_id)
        ref: dict[str, Any] | None = None
        usage: dict[str, Any] | None = None
        try:
            if request.plan_ref is not None:
                plan, planner, ref = await asyncio.to_thread(self._saved_plan, request)
            else:
                plan, made = await self._make_plan(request)
                planner, usage = made.label(), made.usage()
        except PlanRefused as exc:
            if not self.questions.enabled:
                return self._failed(record, envelope, str(exc), request)
            wording = request.request or ""
            return self._ask(record, envelope, exc, request, wording)
        except (PlanningError, PlanVetoed, PlanInvalid, SavedPlanError) as exc:
            return self._failed(record, envelope, str(exc), request)
        return self._proposed(record, envelope, request, plan, planner, ref, usage)

    def _proposed(
        self,
        record: PlanRecord,
        envelope: dict[str, Any],
        request: c.ExecutionRequested | c.PlanQuestionAsked,
        plan: dict[str, Any],
        planner: str,
        ref: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> Event:
        execution_id = record.id
        self.planned[execution_id] = None
        while len(self.planned) > 10_000:
            self.planned.pop(next(iter(self.planned)))
        return record.trigger(
            c.PlanProposed,
            **envelope,
            execution_id=execution_id,
            plan=plan,
            planner=planner,
            request=request.request,  # the original words, answered or not: learning keeps them
            inputs=request.inputs,
            review_plan=request.review_plan,
            plan_ref=ref,
            simulation=request.simulation,
            usage=usage,
        )

    def _failed(
        self,
        record: PlanRecord,
        envelope: dict[str, Any],
        reason: str,
        request: c.ExecutionRequested | None = None,
    ) -> Event:
        log.info("planning failed for %s: %s", record.id, reason)
        planner = self._name(request) if request is not None else self.planner.name
        return record.trigger(
            c.PlanningFailed, **envelope, execution_id=record.id, reason=reason, planner=planner
        )

    def _ask(
        self,
        record: PlanRecord,
        envelope: dict[str, Any],
        refused: PlanRefused,
        about: c.ExecutionRequested | c.PlanQuestionAsked,
        wording: str,
    ) -> Event:
        """Ask the person instead of failing; after the last round, fail with the reason."""
        if isinstance(about, c.PlanQuestionAsked) and about.round >= self.questions.rounds:
            reason = f"still unclear after {about.round} answers: {refused}"
            return self._failed(record, envelope, reason)
        fields = ask(refused, about, wording, self.questions, self.catalogue, self.planner.name)
        log.info("planner asks about %s (round %d)", record.id, fields["round"])
        return record.trigger(c.PlanQuestionAsked, **envelope, **fields)

    async def _answered(self, answer: Reply) -> Event | None:
        """A question's answer (plan again with it) or its end without one (fail)."""
        history = await asyncio.to_thread(self.store.load, answer.execution_id)
        record = PlanRecord.rebuild(answer.execution_id, history)
        question = record.question if record is not None else None
        if record is None or question is None or record.status != "asking":
            return None  # planned or failed already (a redelivery)
        if question.approval_id != answer.aggregate_id:
            return None  # an earlier round's gate
        envelope = answer.caused(correlation_id=answer.execution_id)
        if isinstance(answer, c.ApprovalRejected):
            reason = f"the planner's question was not answered: {answer.reason}"
            return self._failed(record, envelope, reason)
        return await self._replan(record, envelope, question, answer.answer)

    async def _replan(
        self,
        record: PlanRecord,
        envelope: dict[str, Any],
        question: c.PlanQuestionAsked,
        answer: str,
    ) -> Event:
        """The request completed by the answer: the first wording that plans wins; if none
        does, the first one's refusal is the next question."""
        asked = question.model_copy(update={"answers": [*question.answers, answer]})
        first: tuple[PlanRefused, str] | None = None
        for wording in wordings(question, answer):
            # The request as the answer words it: planned like a new one (never recorded).
            attempt = c.ExecutionRequested(
                aggregate_id=record.id,
                workspace_id=question.workspace_id,
                request=wording,
                inputs=question.inputs,
            )
            try:
                plan, made = await self._make_plan(attempt)
            except PlanRefused as exc:
                first = first or (exc, wording)
                continue
            except (PlanningError, PlanVetoed, PlanInvalid) as exc:
                return self._failed(record, envelope, str(exc))
            return self._proposed(record, envelope, asked, plan, made.label(), None, made.usage())
        assert first is not None
        return self._ask(record, envelope, first[0], asked, first[1])

    async def _make_plan(self, request: c.ExecutionRequested) -> tuple[dict[str, Any], Answer]:
        if request.plan is not None:
            plan = validate_plan(request.plan, self.catalogue, request.inputs)
            data = plan.model_dump(mode="json", exclude_defaults=True)
            return data, Answer(data, "direct")
        if not (request.request or "").strip():
            raise PlanningError("the request is empty: say what should be done, or give a plan")
        policy = WorkspacePolicy()
        if self.policy_of is not None:
            policy = await asyncio.to_thread(self.policy_of, request.workspace_id)
        words, ws = request.request or "", request.workspace_id
        await run_before_plan(policy, words, request.inputs, ws)
        stats = await self.stats_feed.give(self.planner, ws) if self.stats_feed else {}
        made = await plan_or_reuse(self, request)  # a learned plan, or a fresh one
        data = order_alternatives(made.plan, stats)  # the better-performing alternative first
        data = await run_plan_hooks(policy, words, ws, data)  # plugins may amend or veto it
        plan = validate_plan(data, self.catalogue, request.inputs)
        if self.policy_of is not None:
            if problems := policy_problems(plan, policy):
                raise PlanInvalid(problems)
        return plan.model_dump(mode="json", exclude_defaults=True), made

    def _saved_plan(
        self, request: c.ExecutionRequested
    ) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """The exact version of a saved plan this execution runs: pinned, by the A/B split or
        the current one (chosen here, once, and recorded on ``plan.proposed``)."""
        ref = request.plan_ref or {}
        saved = self.library.load(request.workspace_id, str(ref.get("name")))
        pinned = ref.get("version")
        choice = saved.choose(
            int(pinned) if pinned is not None else None, request.inputs, request.aggregate_id
        )
        content = saved.version_of(choice.version).plan
        plan = validate_plan(content, self.catalogue, request.inputs)
        if self.policy_of is not None:
            if problems := policy_problems(plan, self.policy_of(request.workspace_id)):
                raise PlanInvalid(problems)
        return plan.model_dump(mode="json", exclude_defaults=True), "saved", choice.ref(saved.name)

    def _name(self, request: c.ExecutionRequested) -> str:
        if request.plan_ref is not None:
            return "saved"
        return "direct" if request.plan is not None else self.planner.name

    def _learn(self, event: c.ExecutionSucceeded) -> None:
        remember = getattr(self.planner, "remember", None)
        if remember is None or event.aggregate_id not in self.planned:
            return  # a direct plan, or planned before a restart: learning is best effort
        self.planned.pop(event.aggregate_id, None)
        record = PlanRecord.rebuild(event.aggregate_id, self.store.load(event.aggregate_id))
        if record is not None and record.request and record.plan:
            remember(record.request, record.plan)


def _question_answer(event: Event) -> Reply | None:
    """An answer to (or the end of) one of the planner's questions, else None."""
    if isinstance(event, c.ApprovalAnswered | c.ApprovalRejected):
        return event if event.step_id == QUESTION_GATE else None
    return None
