"""The LLM planner's repair loop against a fake OpenAI-compatible server (`make bench-llm`, and
part of `make bench`): every request of the planner suite is planned through the real ``openai``
SDK and the real repair loop, with the server's answers scripted: a fixed (seeded) mix of good
plans and bad ones (unknown tools, missing inputs, cycles, dangling references, text that is not
JSON). What it measures is the loop (does a rejected plan go back with the validator's errors
and come out valid?), not any model's planning: a real model's quality is `make bench-planner`
with BATON_LLM_MODEL set.

    .venv/bin/python -m bench.llm_repairs
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton_common.egress import EgressGuard, parse_allow
from baton_common.fakemodels import FakeOpenAI, fake_openai_server
from baton_common.openaichat import OpenAIChat
from baton_planner.modelplanner import ModelPlanner
from baton_planner.offline import OfflinePlanner
from baton_planner.planners import PlanningError
from baton_planner.quality import load_suite

SUITE = Path(__file__).resolve().parent / "planner_suite.yaml"
SEED = 30  # the same mix every run
# How a request's answers are scripted: (share, bad answers before a good one; 3 = never good)
MIX = ((0.55, 0), (0.20, 1), (0.10, 2), (0.10, "text"), (0.05, 3))


def bad_answers() -> list[Any]:
    """Plans the validator rejects, each for another reason, and one answer that is not JSON."""
    agent = {"id": "a", "tool": "mock.agent", "input": {"task": "x"}}
    return [
        {"steps": [{"id": "scrape", "tool": "web.scrape", "input": {"url": "https://x"}}]},
        {"steps": [{"id": "get", "tool": "http.request", "input": {}}]},  # no url
        {"steps": [{**agent, "depends_on": ["b"]}, {**agent, "id": "b", "depends_on": ["a"]}]},
        {"steps": [{**agent, "input": {"task": "${steps.nowhere.output.result}"}}]},
    ]


@dataclass
class Tally:
    """What the loop did over the suite."""

    first_time: int = 0
    repaired: int = 0
    gave_up: int = 0
    calls: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)

    def lines(self, label: str) -> list[str]:
        n = self.first_time + self.repaired + self.gave_up
        needed = self.repaired + self.gave_up
        rate = self.repaired / needed if needed else 1.0
        return [
            f"LLM planner repair loop ({label}; fake OpenAI-compatible server, scripted answers):",
            f"  {n} requests: {self.first_time} valid first time, {self.repaired} repaired, "
            f"{self.gave_up} gave up after the allowed repairs (a clear planning error)",
            f"  repair rate: {self.repaired}/{needed} = {rate:.0%} of plans that needed repair; "
            f"{statistics.mean(self.calls):.2f} model calls per request; "
            f"median {statistics.median(self.seconds) * 1000:.1f} ms per request; "
            f"{statistics.mean(self.tokens):.0f} tokens per request (as the server counts them; the fake counts words)",
        ]


def script(fake: FakeOpenAI, good: dict[str, Any], rng: random.Random) -> None:
    """Queue one request's answers: some bad ones (or text), then a good one unless never."""
    pick, kind = rng.random(), MIX[-1][1]
    for share, option in MIX:
        if pick < share:
            kind = option
            break
        pick -= share
    bad = bad_answers()
    if kind == "text":
        fake.reply_json("Sure! Here is the plan: first fetch, then summarise.")
    else:
        fake.reply_json(*[rng.choice(bad) for _ in range(int(kind))])
    if kind != 3:
        fake.reply_json(good)


async def run(schemas_refused: bool = False) -> Tally:
    cases = load_suite(SUITE)
    offline, rng, tally = OfflinePlanner(), random.Random(SEED), Tally()
    with fake_openai_server(schemas_refused) as fake:
        # The fake listens on 127.0.0.1: allowed past the egress guard, as an operator would.
        local = EgressGuard(parse_allow("127.0.0.1"))
        planner = ModelPlanner(
            OpenAIChat("fake-planner", base_url=fake.url, api_key="k", guard=local)
        )
        for case in cases:
            inputs = case.get("inputs", {})
            good = await _good_plan(offline, case["request"], inputs)
            script(fake, good, rng)
            before = len(fake.requests)
            started = time.perf_counter()
            try:
                made = await planner.answer(case["request"], inputs)
            except PlanningError:
                tally.gave_up += 1
            else:
                tally.tokens.append(made.input_tokens + made.output_tokens)
                if made.attempts == 1:
                    tally.first_time += 1
                else:
                    tally.repaired += 1
            tally.seconds.append(time.perf_counter() - started)
            tally.calls.append(len(fake.requests) - before)
            fake.json_replies.clear()  # what a request left unused is not the next one's
    return tally


async def _good_plan(offline: OfflinePlanner, request: str, inputs: dict[str, Any]) -> Any:
    """The answer a good model gives: the offline planner's plan, or a one-step plan when it
    refuses (the loop is measured, not the plan's fit)."""
    try:
        return await offline.plan(request, inputs)
    except PlanningError:
        return {"steps": [{"id": "do_it", "tool": "mock.agent", "input": {"task": request}}]}


def report() -> str:
    lines = asyncio.run(run()).lines("response_format json_schema")
    lines += asyncio.run(run(schemas_refused=True)).lines("a server without json_schema")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
