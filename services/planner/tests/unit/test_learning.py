"""The learning engine on the in-memory store: a paraphrased request reuses a proven plan (with
the local model shipped in its wheel, and with the lexical fallback), what was learned survives
a restart (it is events), failure patterns are found and acted on, and Gemini embeddings are
asked for the way the real SDK asks (a local fake of the REST API)."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec
from baton_common.consumer import Delivery
from baton_common.store import MemoryEventStore
from baton_common.testing import LocalHandler
from baton_planner.application import PlannerApp
from baton_planner.learning import PATTERN_AFTER, Learner, error_class
from baton_planner.offline import OfflinePlanner
from baton_planner.reuse import REUSED, load_learning
from baton_planner.semantic import (
    GeminiEmbedder,
    LocalEmbedder,
    SemanticConfigError,
    select_embedder,
    threshold_from,
)

# The fake model servers listen on 127.0.0.1, which an operator allows (BATON_EGRESS_ALLOW).
pytestmark = pytest.mark.usefixtures("loopback_allowed")

DEMO = "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"
REWORDED = "gather the incident reports of api, billing and search, write a summary of them and store it in summary.md"
LIGHT = "please collect the incident reports for api, billing and search, then summarize them and save the summary to summary.md"
OTHER = "read notes.md, summarise it and save it to out.md"


class World:
    """A planner app over one in-memory store, and what it committed."""

    def __init__(
        self,
        learner: Learner,
        store: MemoryEventStore | None = None,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
    ) -> None:
        self.store = store or MemoryEventStore("planner")
        self.app = PlannerApp(self.store, OfflinePlanner(), catalogue, learner=learner)

    async def feed(self, *events: Any) -> list[Any]:
        commit = await self.app.handle([Delivery(e) for e in events])
        self.store.commit(commit)
        return list(commit.events)

    async def plan(self, request: str) -> c.PlanProposed:
        eid = uuid4()
        new = await self.feed(
            c.ExecutionRequested(aggregate_id=eid, aggregate_version=1, request=request)
        )
        proposed = [e for e in new if isinstance(e, c.PlanProposed)]
        assert proposed, new
        return proposed[0]

    async def succeed(self, proposed: c.PlanProposed) -> list[Any]:
        return await self.feed(
            c.ExecutionSucceeded(aggregate_id=proposed.execution_id, aggregate_version=9)
        )


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


async def test_a_reworded_request_reuses_the_plan_with_the_local_model(
    local: LocalEmbedder,
) -> None:
    world = World(Learner(local, threshold_from(None, "local")))
    first = await world.plan(DEMO)
    assert first.planner == "offline"
    learned = [e for e in await world.succeed(first) if isinstance(e, c.PlanLearned)]
    assert learned and learned[0].embedder == "local" and len(learned[0].vector) == 256
    again = await world.plan(REWORDED)
    assert again.planner == REUSED and again.plan == first.plan
    other = await world.plan(OTHER)
    assert other.planner == "offline"
    assert world.app.learner is not None and world.app.learner.stats == {"hits": 1, "misses": 2}


async def test_a_lightly_reworded_request_reuses_the_plan_with_the_lexical_fallback() -> None:
    world = World(Learner(None, threshold_from(None, "lexical")))
    first = await world.plan(DEMO)
    await world.succeed(first)
    await world.succeed(await world.plan(OTHER))
    again = await world.plan(LIGHT)
    assert again.planner == REUSED and again.plan == first.plan
    assert (await world.plan("delete summary.md")).planner == "offline"


@pytest.mark.parametrize("embedder", ["local", "lexical"])
async def test_a_plan_is_never_reused_for_a_request_naming_other_values(
    embedder: str, local: LocalEmbedder
) -> None:
    """The learned plan writes summary.md: a request about todo.md, however similar its words,
    gets its own plan (reusing would write the wrong file)."""
    world = World(Learner(local if embedder == "local" else None, threshold_from(None, embedder)))
    await world.succeed(await world.plan(DEMO))
    elsewhere = await world.plan(DEMO.replace("summary.md", "todo.md"))
    assert elsewhere.planner == "offline"
    assert "todo.md" in json.dumps(elsewhere.plan) and "summary.md" not in json.dumps(
        elsewhere.plan
    )


async def test_learned_plans_survive_a_restart(local: LocalEmbedder) -> None:
    world = World(Learner(local, 0.8))
    await world.succeed(await world.plan(DEMO))
    restarted = World(Learner(local, 0.8), store=world.store)  # a new process, the same store
    assert load_learning(restarted.app) >= 1
    assert (await restarted.plan(REWORDED)).planner == REUSED


async def test_a_failure_pattern_is_detected_reported_and_acted_on() -> None:
    world = World(Learner(None, 0.75))
    plan = {"steps": [{"id": "flaky", "tool": "mock.agent", "input": {"task": "x"}}]}
    found: list[Any] = []
    for n in range(PATTERN_AFTER):
        eid = uuid4()
        found += await world.feed(
            c.ExecutionStarted(aggregate_id=eid, aggregate_version=1, plan=plan),
            # retried until the attempts ran out (a retry may help: the tool said so)
            c.StepFailed(aggregate_id=eid, aggregate_version=2, step_id="flaky", attempt=3,
                         error=f"upstream 503 after {n + 1}0 ms on 'host-{n}'", final=True),
        )  # fmt: skip
    patterns = [e for e in found if isinstance(e, c.FailurePatternDetected)]
    assert len(patterns) == 1 and patterns[0].tool == "mock.agent"
    assert patterns[0].error_class == "upstream # after # ms on '…'"
    assert world.app.learner is not None
    report = world.app.learner.insights("default")
    assert report["failure_patterns"][0]["count"] == PATTERN_AFTER
    assert report["tool_preference"][0] == {
        "tool": "mock.agent", "runs": 3, "succeeded": 0, "failed": 3, "cached": 0,
        "success_rate": 0.0, "mean_ms": None,
    }  # fmt: skip
    planned = await world.plan("gather the news")  # the offline planner picks mock.agent
    steps = [s for s in planned.plan["steps"] if s["tool"] == "mock.agent"]
    assert steps and all(s["retry"]["max_attempts"] == 5 for s in steps)
    restarted = World(Learner(None, 0.75), store=world.store)
    load_learning(restarted.app)
    assert restarted.app.learner is not None
    assert restarted.app.learner.insights("default")["failure_patterns"][0]["tool"] == "mock.agent"


async def _fail_for_good(world: World, plan: dict[str, Any], step: str, times: int) -> list[Any]:
    """``times`` executions whose ``step`` fails at its first of three attempts, not retried:
    the tool said a retry cannot help."""
    found: list[Any] = []
    for n in range(times):
        eid = uuid4()
        found += await world.feed(
            c.ExecutionStarted(aggregate_id=eid, aggregate_version=1, plan=plan),
            c.StepFailed(aggregate_id=eid, aggregate_version=2, step_id=step, attempt=1,
                         error=f"weather.v1: API retired (HTTP 410) for 'city-{n}'", final=True),
        )  # fmt: skip
    return found


WEATHER_INPUT = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def _weather(name: str, **fields: Any) -> ToolSpec:
    return ToolSpec(name=name, description=f"Look up the weather ({name}).",
                    input_schema=WEATHER_INPUT, output_schema={"type": "object"},
                    keywords=("weather", "forecast"), **fields)  # fmt: skip


async def test_a_failure_a_retry_cannot_fix_puts_another_tool_first() -> None:
    tools = (*DEFAULT_CATALOGUE.all(), _weather("weather.v1"), _weather("weather.v2"))
    world = World(Learner(None, 0.75), catalogue=Catalogue(tools))
    call = {"id": "w", "tool": "weather.v1", "input": {"city": "oslo"}}
    found = await _fail_for_good(world, {"steps": [call]}, "w", PATTERN_AFTER)
    [pattern] = [e for e in found if isinstance(e, c.FailurePatternDetected)]
    assert pattern.retryable is False and "a retry cannot fix it" in pattern.advice
    learner = world.app.learner
    assert learner is not None
    # no alternative in the step: a stand-in from the catalogue (same input, a shared keyword)
    plan = learner.advise("default", {"steps": [call]}, world.app.catalogue)
    assert plan["steps"][0] == {
        "id": "w", "tool": "weather.v2", "input": {"city": "oslo"},
        "alternatives": [{"tool": "weather.v1", "input": {"city": "oslo"}}],
    }  # fmt: skip
    assert "retry" not in plan["steps"][0]  # more attempts would fail the same way
    # the step's own alternative comes first when it has one
    own = {**call, "alternatives": [{"tool": "mock.agent", "input": {"task": "weather"}}]}
    plan = learner.advise("default", {"steps": [own]}, world.app.catalogue)
    assert [plan["steps"][0]["tool"]] + [a["tool"] for a in plan["steps"][0]["alternatives"]] == [
        "mock.agent",
        "weather.v1",
    ]
    # nothing can stand in: the step stays as it was, without added retries
    alone = learner.advise("default", {"steps": [call]}, Catalogue((_weather("weather.v1"),)))
    assert alone == {"steps": [call]}
    assert learner.insights("default")["failure_patterns"][0]["retryable"] is False


async def test_failures_of_an_alternative_are_its_own() -> None:
    world = World(Learner(None, 0.75))
    step = {"id": "s", "tool": "http.request", "input": {"url": "http://a"},
            "alternatives": [{"tool": "mock.agent", "input": {}}]}  # fmt: skip
    for n in range(PATTERN_AFTER):
        eid = uuid4()
        await world.feed(
            c.ExecutionStarted(aggregate_id=eid, aggregate_version=1, plan={"steps": [step]}),
            c.StepFailed(aggregate_id=eid, aggregate_version=2, step_id="s", attempt=3,
                         error="answered 503", next_variant=1),
            c.StepFailed(aggregate_id=eid, aggregate_version=3, step_id="s", attempt=3,
                         error=f"mock failure {n}", final=True),
        )  # fmt: skip
    assert world.app.learner is not None
    tools = {p["tool"] for p in world.app.learner.insights("default")["failure_patterns"]}
    assert tools == {"http.request", "mock.agent"}


def test_an_ended_executions_step_tools_are_forgotten_a_running_ones_kept() -> None:
    """The planner holds the tools of a started execution's steps to count their outcomes; once
    the execution ends, no step of it ends again: nothing of it is held (it was kept until
    20,000 later executions pushed it out)."""
    learner = Learner(None, 0.75)
    plan = {"steps": [{"id": "s", "tool": "mock.agent", "input": {"task": "x"}}]}
    started = [uuid4() for _ in range(4)]
    learner.observe(
        [c.ExecutionStarted(aggregate_id=e, aggregate_version=1, plan=plan) for e in started]
    )
    done, failed, cancelled, waiting = started
    learner.observe(
        [
            c.StepSucceeded(
                aggregate_id=done, aggregate_version=2, step_id="s", attempt=1, output={}
            ),
            c.ExecutionSucceeded(aggregate_id=done, aggregate_version=3),
            c.ExecutionFailed(aggregate_id=failed, aggregate_version=2, error="x"),
            c.ExecutionCancelled(aggregate_id=cancelled, aggregate_version=2),
        ]
    )
    assert list(learner.step_tools) == [waiting]
    assert learner.insights("default")["tool_preference"][0]["succeeded"] == 1
    late = c.StepSucceeded(
        aggregate_id=waiting, aggregate_version=2, step_id="s", attempt=1, output={}
    )
    learner.observe([late])  # the one still running is counted when its step ends
    assert learner.insights("default")["tool_preference"][0]["succeeded"] == 2


def test_executions_of_one_plan_share_their_step_calls_until_one_moves_to_an_alternative() -> None:
    """20,000 executions waiting at gates held 20,000 copies of the same step calls (issue 32):
    they share one, and the one whose step fails over to its alternative gets its own."""
    learner = Learner(None, 0.75)
    step = {"id": "s", "tool": "http.request", "input": {"url": "http://a"},
            "alternatives": [{"tool": "mock.agent", "input": {}}]}  # fmt: skip
    first, second = uuid4(), uuid4()
    learner.observe(
        [
            c.ExecutionStarted(aggregate_id=e, aggregate_version=1, plan={"steps": [step]})
            for e in (first, second)
        ]
    )
    assert learner.step_tools[first] is learner.step_tools[second]
    learner.observe(
        [
            c.StepFailed(aggregate_id=first, aggregate_version=2, step_id="s", attempt=3,
                         error="answered 503", next_variant=1),
        ]
    )  # fmt: skip
    assert learner.step_tools[first].tool("s") == "mock.agent"
    assert learner.step_tools[second].tool("s") == "http.request"


def test_error_classes_and_settings_are_checked() -> None:
    assert error_class("timed out after 30s") == error_class("timed out after 45s")
    with pytest.raises(SemanticConfigError, match="between 0 and 1"):
        threshold_from("1.5", "local")
    with pytest.raises(SemanticConfigError, match="between 0 and 1"):
        threshold_from("high", "local")
    assert threshold_from("0.7", "local") == 0.7
    with pytest.raises(SemanticConfigError, match="BATON_PLAN_EMBEDDER"):
        select_embedder({"BATON_PLAN_EMBEDDER": "magic"})
    assert select_embedder({"BATON_PLAN_EMBEDDER": "lexical"}) is None


class FakeEmbeddings:
    """The Gemini REST API's embedding call, locally: each text becomes a scripted vector."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(LocalHandler):
            def do_POST(self) -> None:
                body = json.loads(self.body())
                fake.requests.append(
                    {"path": self.path, "body": body, "key": self.headers.get("x-goog-api-key")}
                )
                texts = [r["content"]["parts"][0]["text"] for r in body.get("requests", [])]
                data = json.dumps(
                    {"embeddings": [{"values": [len(t), 1.0, 0.0]} for t in texts]}
                ).encode()
                self.answer(200, data, {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def test_gemini_embeddings_through_the_sdk_against_a_fake_api() -> None:
    fake = FakeEmbeddings()
    try:
        chosen = select_embedder({"GEMINI_API_KEY": "k-test", "BATON_GEMINI_BASE_URL": fake.url})
        assert isinstance(chosen, GeminiEmbedder)
        [vector] = await chosen.embed(["abc"])
        assert vector == pytest.approx([3 / 10**0.5, 1 / 10**0.5, 0.0])
        request = fake.requests[0]
        assert request["path"].endswith("models/gemini-embedding-001:batchEmbedContents")
        assert request["key"] == "k-test"
        assert request["body"]["requests"][0]["taskType"] == "SEMANTIC_SIMILARITY"
    finally:
        fake.server.shutdown()
