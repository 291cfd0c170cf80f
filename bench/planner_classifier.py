"""Would a tiny classifier, trained on the tuned part of the planner quality suite and shipped as
data inside the planner package, help the offline planner? Measured on the held-out part only
(issue 30, session 6).

The classifier predicts a request's tool set (the sorted tools of its steps, or "refused"):
nearest neighbour (1-NN) and a softmax regression, in numpy, over WordLlama embeddings (the
model the planner already ships, from its PyPI wheel) and a bag of words and word pairs. Both
would ship as a few hundred kB of arrays; nothing downloads at run time. Printed: how many
held-out tool sets each gets right, the offline planner's own count on the same cases, and
whether the classifier disagreeing with the planner would flag the planner's wrong plans (so
that the planner asks instead). Only counts are printed: no held-out request or answer.

    .venv/bin/python -m bench.planner_classifier
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from baton_planner.offline import OfflinePlanner
from baton_planner.offline.meaning import _model
from baton_planner.planners import PlanningError
from baton_planner.quality import SuitePart, load_part

HERE = Path(__file__).resolve().parent
TUNED = [HERE / "planner_suite.yaml", HERE / "planner_suite_agents.yaml"]
HELD_OUT = [HERE / "planner_heldout.yaml", HERE / "planner_heldout_agents.yaml"]
_TOKEN = re.compile(r"[a-z]+|https?://|\.json|\.md|\.txt|#\w|\{|\d+")


def label(case: dict[str, Any]) -> str:
    return "refused" if case.get("refused") else "+".join(sorted(case.get("tools", [])))


def labelled(parts: list[SuitePart]) -> list[tuple[str, str, SuitePart]]:
    return [
        (c["request"], label(c), p)
        for p in parts
        for c in p.cases
        if "tools" in c or c.get("refused")
    ]


def bag(texts: list[str], vocab: dict[str, int] | None = None) -> tuple[Any, dict[str, int]]:
    """Unit rows of log counts of words and word pairs (those seen twice in training)."""
    docs = []
    for text in texts:
        tokens = _TOKEN.findall(text.lower())
        docs.append(Counter(tokens) + Counter(f"{a}_{b}" for a, b in itertools.pairwise(tokens)))
    if vocab is None:
        seen = Counter(t for d in docs for t in d)
        vocab = {t: i for i, t in enumerate(t for t, n in seen.items() if n >= 2)}
    rows = np.zeros((len(docs), len(vocab)))
    for i, doc in enumerate(docs):
        for token, n in doc.items():
            if token in vocab:
                rows[i, vocab[token]] = 1 + np.log(n)
    return rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-9), vocab


def softmax_regression(x: Any, y: list[str], test: Any, epochs: int = 300) -> list[str]:
    labels = sorted(set(y))
    index = {name: i for i, name in enumerate(labels)}
    target = np.zeros((len(y), len(labels)))
    target[np.arange(len(y)), [index[name] for name in y]] = 1
    weights, bias = np.zeros((x.shape[1], len(labels))), np.zeros(len(labels))
    for _ in range(epochs):
        z = x @ weights + bias
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - target) / len(y)
        weights -= 2.0 * (x.T @ grad + 1e-3 * weights)
        bias -= 2.0 * grad.sum(0)
    return [labels[i] for i in (test @ weights + bias).argmax(1)]


async def planner_sets(cases: list[tuple[str, str, SuitePart]]) -> list[str]:
    found = []
    for request, _, part in cases:
        try:
            plan = await OfflinePlanner(part.catalogue).plan(request, {})
        except PlanningError:
            found.append("refused")
            continue
        found.append("+".join(sorted(s["tool"] for s in plan["steps"])))
    return found


def main() -> None:
    train = labelled([load_part(p) for p in TUNED])
    test = labelled([load_part(p) for p in HELD_OUT])
    y, truth = [c[1] for c in train], [c[1] for c in test]
    model = _model()
    if model is None:
        raise SystemExit("WordLlama is not installed: make install")
    e_train = np.asarray(model.embed([c[0] for c in train], norm=True))
    e_test = np.asarray(model.embed([c[0] for c in test], norm=True))
    b_train, vocab = bag([c[0] for c in train])
    b_test, _ = bag([c[0] for c in test], vocab)
    x_train, x_test = np.hstack([e_train, b_train]), np.hstack([e_test, b_test])

    def right(found: list[str]) -> int:
        return sum(f == t for f, t in zip(found, truth, strict=True))

    def nearest(a: Any, b: Any) -> list[str]:
        return [y[i] for i in (b @ a.T).argmax(1)]

    print(f"trained on {len(train)} tuned requests ({len(set(y))} tool sets); held-out {len(test)}")
    print(f"  1-NN, WordLlama embeddings:    {right(nearest(e_train, e_test))}/{len(test)}")
    print(f"  1-NN, words and word pairs:    {right(nearest(b_train, b_test))}/{len(test)}")
    classifier = nearest(x_train, x_test)
    print(f"  1-NN, both:                    {right(classifier)}/{len(test)}")
    print(
        f"  softmax regression, both:      {right(softmax_regression(x_train, y, x_test))}/{len(test)}"
    )
    rules = asyncio.run(planner_sets(test))
    print(f"  the offline planner's rules:   {right(rules)}/{len(test)}")
    wrong = [r != t for r, t in zip(rules, truth, strict=True)]
    flagged = [r != c for r, c in zip(rules, classifier, strict=True)]
    caught = sum(f and w for f, w in zip(flagged, wrong, strict=True))
    print(
        f"  the 1-NN disagreeing with the rules flags {sum(flagged)} requests: {caught} of the "
        f"rules' {sum(wrong)} wrong tool sets and {sum(flagged) - caught} right ones"
    )


if __name__ == "__main__":
    main()
