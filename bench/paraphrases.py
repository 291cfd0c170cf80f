"""Requests in words, each with a paraphrase (the same job) and a near miss (a different job
in similar words), to measure how well each embedder tells them apart.

``python -m bench.paraphrases`` prints the table that docs/context.md quotes: the scores of
paraphrases and of near misses per embedder, and the share of each passing a threshold. The
default threshold of each embedder is the lowest at which no near miss passes.
"""

from __future__ import annotations

import asyncio
import statistics

# (request, paraphrase, near miss)
TRIPLES: list[tuple[str, str, str]] = [
    ("collect incident reports for api, billing and search, summarise them and save the summary to summary.md",
     "gather the incident reports of api, billing and search, write a summary of them and store it in summary.md",
     "collect incident reports for api, billing and search and delete summary.md"),
    ("fetch the weather for paris and email it to ann",
     "get the paris weather forecast and send it to ann by email",
     "fetch the weather for tokyo and save it to a file"),
    ("summarise the sales figures of last week and write them to sales.md",
     "write a summary of last week's sales figures into sales.md",
     "translate last week's sales figures into french"),
    ("check the status of the billing service and post it to the ops webhook",
     "look at how the billing service is doing and post the result to the ops webhook",
     "restart the billing service"),
    ("read notes.txt and translate it into german",
     "translate the contents of notes.txt to german",
     "read notes.txt and count its words"),
    ("research three competitors and compare their prices",
     "find three competitors and make a price comparison",
     "research three suppliers and order from the cheapest"),
    ("download the release notes and extract the breaking changes",
     "get the release notes and pick out the breaking changes",
     "download the release notes and publish them on the blog"),
    ("gather customer feedback from support tickets and classify it by topic",
     "collect the feedback customers left in support tickets and sort it into topics",
     "close all support tickets older than a month"),
    ("monitor the api latency and report when it exceeds 500 ms",
     "watch the api latency and tell me when it goes above 500 ms",
     "lower the api rate limit to 500 requests"),
    ("draft a welcome email for new users and save it to welcome.md",
     "write a welcome message for new users and store it in welcome.md",
     "send the welcome email to all users"),
    ("collect the daily metrics and summarise them for the team",
     "gather today's metrics and write the team a summary",
     "collect the daily metrics and delete the old ones"),
    ("analyse the error logs of search and explain the top three errors",
     "look through the search error logs and explain the three most common errors",
     "rotate the error logs of search"),
]  # fmt: skip


def light(request: str) -> str:
    """A light rewording, as people retype a request: politeness, 'then', US spelling."""
    text = request.replace(" and ", " and then ", 1).replace("summarise", "summarize")
    return "please " + text.replace("analyse", "analyze")


async def scores(embedder_name: str, reworded: bool = True) -> tuple[list[float], list[float]]:
    """Similarity of each request to its paraphrase (a rewording, or a light one when
    ``reworded`` is False), and to its near miss."""
    from baton_planner.semantic import LexicalIndex, LocalEmbedder, cosine

    pairs = [(r, p if reworded else light(r), m) for r, p, m in TRIPLES]
    same, other = [], []
    if embedder_name == "lexical":
        index = LexicalIndex()
        for request, _, _ in pairs:
            index.add(request)
        for i, (_, para, miss) in enumerate(pairs):
            same.append(index.scores(para)[i])
            other.append(index.scores(miss)[i])
        return same, other
    model = LocalEmbedder()
    for request, para, miss in pairs:
        a, b, m = await model.embed([request, para, miss])
        same.append(cosine(a, b))
        other.append(cosine(a, m))
    return same, other


def table(rows: dict[str, tuple[list[float], list[float]]], thresholds: list[float]) -> str:
    lines = [
        "| embedder | paraphrase min / median | near miss median / max | "
        + " | ".join(f"≥ {t:.2f}: para / miss" for t in thresholds)
        + " |",
        "|---|---|---|" + "---|" * len(thresholds),
    ]
    for name, (same, other) in rows.items():
        cells = [
            f"{sum(s >= t for s in same)}/{len(same)} / {sum(o >= t for o in other)}/{len(other)}"
            for t in thresholds
        ]
        lines.append(
            f"| {name} | {min(same):.3f} / {statistics.median(same):.3f} | "
            f"{statistics.median(other):.3f} / {max(other):.3f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


async def main() -> None:
    rows = {}
    for name in ("local", "lexical"):
        rows[f"{name}, reworded"] = await scores(name)
        rows[f"{name}, light"] = await scores(name, reworded=False)
    print(table(rows, [0.6, 0.7, 0.75, 0.8, 0.85, 0.9]))


if __name__ == "__main__":
    asyncio.run(main())
