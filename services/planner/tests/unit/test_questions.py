"""Questions, not dead ends: a refusal becomes a question; its answer plans the request, a second
refusal asks again (bounded), a declined or unanswered question fails with the reason."""

from __future__ import annotations

from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.approvals import QUESTION_GATE, question_id_for
from baton_common.consumer import Delivery
from baton_common.fakemodels import NEWS_PLAN, FakeOpenAI
from baton_common.openaichat import OpenAIChat
from baton_common.store import MemoryEventStore
from baton_planner.application import PlannerApp
from baton_planner.modelplanner import ModelPlanner
from baton_planner.offline import OfflinePlanner
from baton_planner.questions import QuestionsConfigError, QuestionSettings

UNCLEAR = "read notes.md and then frobnicate it"


async def _asked(app: PlannerApp, store: MemoryEventStore, text: str) -> c.PlanQuestionAsked:
    request = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request=text)
    commit = await app.handle([Delivery(request)])
    store.commit(commit)
    [question] = commit.events
    assert isinstance(question, c.PlanQuestionAsked)
    return question


def _answer(question: c.PlanQuestionAsked, text: str) -> c.ApprovalAnswered:
    return c.ApprovalAnswered(
        aggregate_id=question.approval_id,
        aggregate_version=2,
        execution_id=question.execution_id,
        step_id=QUESTION_GATE,
        answer=text,
        by=["ann"],
    )


async def _reply(app: PlannerApp, store: MemoryEventStore, event: c.Event) -> c.Event:
    commit = await app.handle([Delivery(event)])
    store.commit(commit)
    [outcome] = commit.events
    return outcome


async def test_a_refusal_asks_what_it_understood_what_not_and_the_closest_tools() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    question = await _asked(app, store, UNCLEAR)
    assert question.approval_id == question_id_for(question.execution_id, 1)
    assert question.round == 1 and question.request == UNCLEAR
    assert question.understood == ["'read notes.md' → files.read"]
    assert "frobnicate" in question.not_understood[0] and question.unclear
    assert "frobnicate" in question.question and question.deadline == 86_400
    assert question.choices and all(x["tool"] and x["description"] for x in question.choices)


async def test_the_answer_completes_the_plan_and_success_teaches_the_original_words() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    question = await _asked(app, store, UNCLEAR)
    proposed = await _reply(app, store, _answer(question, "summarise it"))
    assert isinstance(proposed, c.PlanProposed) and proposed.request == UNCLEAR
    assert [s["tool"] for s in proposed.plan["steps"]] == ["files.read", "llm.generate"]
    again = await app.handle([Delivery(_answer(question, "summarise it"))])
    assert again.events == []  # a redelivered answer: planned already
    done = c.ExecutionSucceeded(aggregate_id=question.execution_id, aggregate_version=9)
    await app.handle([Delivery(done)])  # learned: the original words map to the plan
    direct = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request=UNCLEAR)
    [planned] = (await app.handle([Delivery(direct)])).events
    assert isinstance(planned, c.PlanProposed)  # the next time: no question


async def test_another_refusal_asks_again_then_fails_after_the_last_round() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    question = await _asked(app, store, UNCLEAR)
    for round_ in (2, 3):
        question = await _reply(app, store, _answer(question, "zzz qqq"))  # type: ignore[assignment]
        assert isinstance(question, c.PlanQuestionAsked) and question.round == round_
        assert question.answers == ["zzz qqq"] * (round_ - 1)
    failed = await _reply(app, store, _answer(question, "zzz qqq"))
    assert isinstance(failed, c.PlanningFailed)
    assert failed.reason.startswith("still unclear after 3 answers: cannot plan")


async def test_a_declined_or_unanswered_question_fails_with_the_reason() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    question = await _asked(app, store, UNCLEAR)
    expired = c.ApprovalRejected(
        aggregate_id=question.approval_id,
        aggregate_version=3,
        execution_id=question.execution_id,
        step_id=QUESTION_GATE,
        reason="no answer within 2 s",
        automatic=True,
    )
    failed = await _reply(app, store, expired)
    assert isinstance(failed, c.PlanningFailed)
    assert failed.reason == "the planner's question was not answered: no answer within 2 s"


async def test_questions_off_fails_as_before_and_bad_settings_are_named() -> None:
    app = PlannerApp(
        MemoryEventStore("planner"), OfflinePlanner(), questions=QuestionSettings(False)
    )
    request = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request=UNCLEAR)
    [failed] = (await app.handle([Delivery(request)])).events
    assert isinstance(failed, c.PlanningFailed) and "cannot plan" in failed.reason
    assert QuestionSettings.from_env({"BATON_PLAN_QUESTION_DEADLINE": "PT2M"}).deadline == 120
    assert QuestionSettings.from_env({"BATON_PLAN_QUESTION_DEADLINE": "none"}).deadline is None
    assert not QuestionSettings.from_env({"BATON_PLAN_QUESTIONS": "off"}).enabled
    with pytest.raises(QuestionsConfigError, match="BATON_PLAN_QUESTION_DEADLINE"):
        QuestionSettings.from_env({"BATON_PLAN_QUESTION_DEADLINE": "soon"})


async def test_an_answer_naming_one_of_the_choices_puts_that_tool_there() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    question = await _asked(app, store, UNCLEAR)
    assert "text.template" in {x["tool"] for x in question.choices}
    proposed = await _reply(app, store, _answer(question, "text.template"))
    assert isinstance(proposed, c.PlanProposed)
    assert [s["tool"] for s in proposed.plan["steps"]] == ["files.read", "text.template"]


async def test_the_model_planners_question_is_asked_and_its_answer_plans(
    fake_openai: FakeOpenAI,
) -> None:
    store = MemoryEventStore("planner")
    client = OpenAIChat("local-model", base_url=fake_openai.url, timeout_s=5)
    app = PlannerApp(store, ModelPlanner(client))
    fake_openai.reply_json({"question": {"question": "Which news site?", "missing": ["the site"]}})
    question = await _asked(app, store, "collect the news")
    assert question.question == "Which news site?" and question.not_understood == ["the site"]
    assert question.planner == "openai" and question.round == 1
    fake_openai.reply_json(NEWS_PLAN)
    proposed = await _reply(app, store, _answer(question, "from example.com"))
    assert isinstance(proposed, c.PlanProposed) and proposed.plan == NEWS_PLAN
    assert proposed.request == "collect the news"  # the original words: learning keeps them
    assert "collect the news from example.com" in fake_openai.prompt_of(1)  # the answer, told
