"""`make bench` (and `python -m bench.learning_bench`): 54 requests in words, run twice on one
engine. The first pass plans them (and learns from each success and each failure pattern); the
second pass finds proven plans to reuse, cached LLM answers, and plans that avoid a tool that
fails for good. Printed as figures and written to docs/context.md between the generated markers.

A request the planner cannot plan with confidence becomes a question (the execution waits). The
first pass leaves its questions unanswered (declined: they count as failures); the second answers
them as a person would, from scripted answers (bench/learning_answers.yaml), and learning keeps
each answered request's plan, so the failures fall.

The requests: 12 jobs, each in its own words, reworded, lightly reworded, and a near miss (a
different job in similar words), plus two more (see bench/paraphrases.py); then four weather
look-ups, for which the engine has two weather tools (agent files, bench/learning_tools.py), the
one the planner prefers retired.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml
from baton_common.embedded import free_port

from bench import baton_bench as bb
from bench.learning_tools import agent_files
from bench.paraphrases import TRIPLES, light

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "context.md"
BEGIN, END = "<!-- learning-bench:begin -->", "<!-- learning-bench:end -->"
ANSWERS_FILE = Path(__file__).resolve().parent / "learning_answers.yaml"
WEATHER = [
    "look up the weather in oslo",
    "look up the weather forecast for rome",
    "look up the weather in lisbon",
    "look up the weather for madrid",
]


def requests() -> list[str]:
    found = [text for r, p, m in TRIPLES for text in (r, p, light(r), m)]
    found += ["collect the news about ai and summarise it", "gather ai news and write a summary"]
    return found[:50] + WEATHER


def scripted_answers() -> dict[str, str]:
    """What a person answers to the planner's question about each request it asked about."""
    data = yaml.safe_load(ANSWERS_FILE.read_text()) or {}
    return {str(k): str(v) for k, v in data.items()}


async def answer_questions(
    client: httpx.AsyncClient,
    running: bb.Running,
    eid: str,
    answer: str | None,
    asked: Counter[str],
) -> None:
    """Until the execution ends: each question it asks is answered (or declined: ``None``)."""
    seen: set[str] = set()
    while True:
        view = (await client.get(f"{running.url}/v1/executions/{eid}")).json()
        question = view.get("question") or {}
        if view.get("status") == "waiting" and question.get("id") not in seen:
            seen.add(question["id"])
            asked["questions"] += 1
            body = {"decision": "answer", "answer": answer} if answer else {"decision": "reject"}
            url = f"{running.url}/v1/approvals/{question['id']}/decision"
            while (resp := await client.post(url, json=body)).status_code == 404:
                await asyncio.sleep(0.1)  # the gate is being opened
            asked["answered" if answer else "declined"] += resp.status_code == 200
        await asyncio.sleep(0.2)


async def one_pass(
    client: httpx.AsyncClient,
    running: bb.Running,
    texts: list[str],
    answers: dict[str, str] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    ids = []
    asked: Counter[str] = Counter()
    for text in texts:  # one after another: each success is learned before the next request
        resp = await client.post(f"{running.url}/v1/executions", json={"request": text})
        resp.raise_for_status()
        eid = resp.json()["id"]
        answer = (answers or {}).get(text)
        watcher = asyncio.create_task(answer_questions(client, running, eid, answer, asked))
        try:
            await asyncio.wait_for(bb._end_of(running, eid), 120)
        finally:
            watcher.cancel()
        ids.append(eid)
    elapsed = time.perf_counter() - started
    views = [(await client.get(f"{running.url}/v1/executions/{i}")).json() for i in ids]
    steps = [s for v in views for s in v["steps"].values()]
    llm = [s for s in steps if s["tool"] == "llm.generate" and s["status"] == "succeeded"]
    misses = [v for i, v in enumerate(views) if i < 48 and i % 4 == 3]  # the near misses
    return {
        "questions": asked["questions"],
        "answered": asked["answered"],
        "near_miss_reused": sum(v.get("planner") == "reused" for v in misses),
        "errors": [
            f"{n}× {error}"
            for error, n in sorted(
                Counter(
                    (v.get("error") or "")[:90] for v in views if v["status"] != "succeeded"
                ).items()
            )
        ],
        "seconds": elapsed,
        "plan_reused": sum(v.get("planner") == "reused" for v in views),
        "planned": sum(v.get("planner") not in (None, "reused") for v in views),
        "failed": sum(v["status"] != "succeeded" for v in views),
        "weather_failed": sum(
            v["status"] != "succeeded" for v, t in zip(views, texts, strict=True) if t in WEATHER
        ),
        "cache_hits": sum(bool(s.get("cached_from")) for s in steps),
        "llm_calls": sum(not s.get("cached_from") for s in llm),
        "llm_cached": sum(bool(s.get("cached_from")) for s in llm),
        "tokens_spent": sum(_tokens(s) for s in llm if not s.get("cached_from")),
        "tokens_saved": sum(_tokens(s) for s in llm if s.get("cached_from")),
    }


def _tokens(step: dict[str, Any]) -> int:
    usage = (step.get("output") or {}).get("usage") or {}
    return int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)


def table(first: dict[str, Any], second: dict[str, Any], embedder: str, n: int) -> str:
    rows = [
        ("plans reused (of the requests)", "plan_reused", "{:.0f}"),
        ("plans made afresh", "planned", "{:.0f}"),
        ("near misses given a reused plan (of 12) ¹", "near_miss_reused", "{:.0f}"),
        ("executions failed", "failed", "{:.0f}"),
        ("… of them weather look-ups (of 4) ²", "weather_failed", "{:.0f}"),
        ("questions asked by the planner ³", "questions", "{:.0f}"),
        ("… answered (scripted, as a person would)", "answered", "{:.0f}"),
        ("steps answered from the cache", "cache_hits", "{:.0f}"),
        ("LLM calls made (offline model)", "llm_calls", "{:.0f}"),
        ("LLM answers from the cache", "llm_cached", "{:.0f}"),
        ("LLM tokens spent (estimated by the tool)", "tokens_spent", "{:.0f}"),
        ("LLM tokens not spent: cache hits", "tokens_saved", "{:.0f}"),
        ("wall time, s (one at a time)", "seconds", "{:.1f}"),
    ]
    lines = [f"{n} requests in words, twice, one engine (`baton up`), embeddings: {embedder}.", "",
             "| figure | first pass | second pass |", "|---|---|---|"]  # fmt: skip
    for label, key, fmt in rows:
        lines.append(f"| {label} | {fmt.format(first[key])} | {fmt.format(second[key])} |")
    lines += [
        "",
        "¹ In the first pass, another job's plan (a wrong reuse); in the second, mostly "
        "the near miss's own plan from the first pass (a right one).",
        "",
        "² The planner prefers weather.lookup, which fails for good (a retired API; the tool "
        "says a retry cannot help). After three such failures the failure pattern makes the "
        "planner put weather.report, a tool taking the same input, first.",
        "",
        "³ A request the planner cannot plan with confidence becomes a question. The first pass "
        "declines them (no answer: the execution fails); the second answers them from "
        "bench/learning_answers.yaml and runs the plan the answer completes.",
        "",
    ]
    for name, figures in (("first", first), ("second", second)):
        lines += [f"Why executions failed ({name} pass, how many times each):", ""]
        lines += [f"- {error}" for error in figures["errors"]] or ["- none"]
        lines.append("")
    return "\n".join(lines).rstrip()


def write_doc(text: str) -> None:
    if not DOC.exists():
        return
    doc = DOC.read_text()
    if BEGIN in doc and END in doc:
        doc = re.sub(f"{BEGIN}.*?{END}", f"{BEGIN}\n{text}\n{END}", doc, flags=re.S)
        DOC.write_text(doc)


def fresh_dir() -> Path:
    data_dir = Path(tempfile.mkdtemp(prefix="baton-learning-bench-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as its own user and must reach the folder
    agents = data_dir / "agents"
    agents.mkdir()
    for name, text in agent_files().items():
        (agents / name).write_text(text)
    os.environ["BATON_AGENTS_DIR"] = str(agents)  # the engine's services take it from here
    return data_dir


async def main() -> None:
    running = await bb.start(fresh_dir(), free_port())
    texts = requests()
    try:
        async with httpx.AsyncClient(headers=running.auth, timeout=60) as client:
            first = await one_pass(client, running, texts)
            await asyncio.sleep(2)  # the last successes are learned
            second = await one_pass(client, running, texts, scripted_answers())
            insights = (await client.get(f"{running.url}/v1/insights")).json()
    finally:
        await bb.stop(running)
    text = table(first, second, insights.get("embedder", "?"), len(texts))
    print(text)
    write_doc(text)


if __name__ == "__main__":
    asyncio.run(main())
