"""Tools chosen by what their descriptions mean, when no word of a task meets a tool's words.

The rules know the built-in tools; an agent file's, an MCP server's or a plugin's tool is known
only by its description ("The weather forecast for a city … (temperature, rain, wind)"), and a
person asks in other words ("how warm will it be in athens?"). Such a task is compared with
each described tool by meaning: the cosine of WordLlama embeddings (the model ships inside its
PyPI wheel and is read from there, nothing is downloaded; see ``baton_planner.semantic``). The
best tool is taken only when it is clearly close (``MIN_SCORE``) and clearly ahead of the next
(``MIN_MARGIN``): a task no tool is near stays a refusal, and a question to the person.

The built-in tools are left out: their words are the rules' own, and a near miss among them
("write the date to today.txt" near a stock quote) is a wrong plan, not a better one. The same
words and catalogue always give the same choice (the embeddings are deterministic).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec

log = logging.getLogger(__name__)

# Measured on the tuned suite's tasks (docs/planner.md): the right described tool scored 0.30 to
# 0.70 and led the next by 0.14 or more; requests that must be refused scored under 0.27.
MIN_SCORE = 0.28
MIN_MARGIN = 0.12
BUILT_IN = frozenset(DEFAULT_CATALOGUE.names())


class DescribedTools:
    """The catalogue's tools that only their descriptions introduce, ready to compare by meaning."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.specs = [s for s in catalogue.all() if s.from_words and s.name not in BUILT_IN]
        self._vectors: Any = None

    def best(self, text: str) -> tuple[ToolSpec, float] | None:
        """The described tool ``text`` means, with its score; None when none is clearly it."""
        model = _model() if self.specs else None
        if model is None or not text.strip():
            return None
        if self._vectors is None:
            self._vectors = model.embed([_described(s) for s in self.specs], norm=True)
        scores = (model.embed([text], norm=True) @ self._vectors.T)[0]
        ranked = sorted(zip(scores.tolist(), self.specs, strict=True), key=lambda p: -p[0])
        first, second = ranked[0][0], ranked[1][0] if len(ranked) > 1 else 0.0
        if first < MIN_SCORE or first - second < MIN_MARGIN:
            return None
        return ranked[0][1], round(first, 3)


def _described(spec: ToolSpec) -> str:
    """A tool in words: its name's parts, then what its description says."""
    return f"{spec.name.replace('.', ' ').replace('_', ' ')}: {spec.description}"


@functools.cache
def _model() -> Any:
    """The WordLlama model from its wheel (loaded once, ~0.4 s); None when it cannot be read."""
    from baton_planner.semantic import LocalEmbedder

    try:
        return LocalEmbedder().load()
    except Exception as exc:  # no package or no weights: the rules alone decide, as before
        log.warning("no local embedding model for tools by description: %s", exc)
        return None
