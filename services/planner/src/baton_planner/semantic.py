"""Embeddings of requests in words, to find an earlier request that means the same.

Three embedders, the best one available wins (``BATON_PLAN_EMBEDDER`` forces one):
- ``gemini``: Gemini's embedding model, when a key is configured (google-genai's ``embed_content``);
- ``local``: WordLlama, a small static-embedding model whose weights ship inside its PyPI wheel
  (``wordllama/weights/l2_supercat_256.safetensors``, 16 MB); it is loaded from the package
  folder with downloads disabled, so nothing is fetched at run time;
- ``lexical``: TF-IDF over word stems and word pairs, computed by hand (a few lines; a library
  such as scikit-learn would add a large dependency for it), when neither of the others loads.

Similarity is the cosine of two vectors; a stored plan is reused above a threshold
(``BATON_PLAN_REUSE_THRESHOLD``, 0 to 1; each embedder's default comes from the measurements in
docs/context.md).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Defaults measured with bench/paraphrases.py (table in docs/context.md): above the highest score of
# a near miss (a different job in similar words), with a margin. Gemini: not measured here (no key).
DEFAULT_THRESHOLDS = {"gemini": 0.90, "local": 0.80, "lexical": 0.75}
GEMINI_EMBEDDING_MODEL = "gemini-embedding-001"


class SemanticConfigError(ValueError):
    """A setting of plan reuse is wrong: the message names it."""


class Embedder(Protocol):
    """Turns texts into vectors (unit length, so a dot product is the cosine)."""

    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def threshold_from(value: str | float | None, embedder: str) -> float:
    """The reuse threshold: ``value`` if given (0 to 1), else the embedder's measured default."""
    if value is None or value == "":
        return DEFAULT_THRESHOLDS.get(embedder, 0.9)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 <= number <= 1:
        raise SemanticConfigError(
            f"BATON_PLAN_REUSE_THRESHOLD: a similarity between 0 and 1, not {value!r}"
        )
    return number


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


# --- local: WordLlama, weights from the wheel ---------------------------------------------------


class LocalEmbedder:
    """WordLlama's 256-dimension model, from the files its wheel installs.

    Loaded on the first request that needs it (about a second, then ~55 MB with numpy and the
    tokenizer): an idle planner holds none of it (issue 32). The start only checks that the
    package and its weights are there, so a missing model still falls back to lexical at once.
    """

    name = "local"

    def __init__(self) -> None:
        from importlib.util import find_spec

        spec = find_spec("wordllama")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("the wordllama package is not installed")
        # The package looks for its tokenizer under ``tokenizer/`` but ships it in
        # ``tokenizers/``, the cache layout: pointing the cache at the package folder makes it
        # find both files there, and ``disable_download`` makes a missing file an error.
        self.folder = Path(spec.origin).parent
        if not any(self.folder.glob("weights/*.safetensors")):
            raise FileNotFoundError(f"no WordLlama weights under {self.folder / 'weights'}")
        self._model: Any = None
        self._loading = asyncio.Lock()

    def load(self) -> Any:
        """The model (loaded once; blocking, so ``embed`` calls it in a thread)."""
        if self._model is None:
            from wordllama import WordLlama

            self._model = WordLlama.load(cache_dir=self.folder, disable_download=True)
        return self._model

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self._model is None:
            async with self._loading:
                try:
                    await asyncio.to_thread(self.load)
                except Exception as exc:  # files unreadable: plan without reuse, as for Gemini
                    raise EmbeddingUnavailable(f"local embedding model: {exc}") from None
        vectors = self._model.embed(list(texts), norm=True)
        return [[float(x) for x in row] for row in vectors]


# --- gemini -------------------------------------------------------------------------------------


class GeminiEmbedder:
    """Gemini's embedding model through google-genai (``base_url`` for a local fake in tests)."""

    name = "gemini"

    def __init__(
        self,
        api_key: str,
        model: str = GEMINI_EMBEDDING_MODEL,
        base_url: str | None = None,
        timeout_s: float = 30,
    ) -> None:
        from baton_common.gemini import client_for

        self.model = model
        self.timeout_s = timeout_s
        self._client = client_for(api_key, base_url, timeout_s)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        from google.genai import types

        config = types.EmbedContentConfig(task_type="SEMANTIC_SIMILARITY")
        try:
            response = await asyncio.wait_for(
                self._client.aio.models.embed_content(
                    model=self.model, contents=list(texts), config=config
                ),
                self.timeout_s + 5,
            )
        except Exception as exc:  # any failure: the caller falls back to planning afresh
            raise EmbeddingUnavailable(f"Gemini embeddings ({self.model}): {exc}") from None
        return [_unit(list(e.values or [])) for e in response.embeddings or []]


class EmbeddingUnavailable(RuntimeError):
    """The embedder could not answer now (Gemini unreachable): plan without reuse."""


# --- lexical: TF-IDF ------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and the to of for in on at by with from into it them this that these those is are be "
    "me my our your please then also all some any".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ised", "ized", "ises", "izes", "ise", "ize",
             "ies", "ed", "es", "s", "ly")  # fmt: skip


def stems(text: str) -> list[str]:
    """Lower-case word stems (a crude suffix strip is enough to match summarise/summarised),
    without stop words, plus each pair of neighbours (word order carries meaning)."""
    words = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP:
            continue
        for suffix in _SUFFIXES:
            if len(word) > len(suffix) + 2 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        words.append(word)
    return words + [f"{a}_{b}" for a, b in itertools.pairwise(words)]


class LexicalIndex:
    """TF-IDF vectors of stored requests, the IDF taken over them (recomputed as they grow)."""

    name = "lexical"

    def __init__(self) -> None:
        self.docs: list[Counter[str]] = []
        self.df: Counter[str] = Counter()

    def add(self, text: str) -> None:
        terms = Counter(stems(text))
        self.docs.append(terms)
        self.df.update(terms.keys())

    def scores(self, text: str) -> list[float]:
        """Cosine of ``text`` with each stored request, in the order they were added."""
        query = self._weights(Counter(stems(text)))
        return [_sparse_cosine(query, self._weights(doc)) for doc in self.docs]

    def _weights(self, terms: Counter[str]) -> dict[str, float]:
        n = len(self.docs) + 1
        return {
            t: (1 + math.log(tf)) * math.log((n + 1) / (self.df.get(t, 0) + 1)) + 1e-9
            for t, tf in terms.items()
        }


def _sparse_cosine(a: dict[str, float], b: dict[str, float]) -> float:
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    na = math.sqrt(sum(w * w for w in a.values()))
    nb = math.sqrt(sum(w * w for w in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


# --- choosing -------------------------------------------------------------------------------------


def select_embedder(env: dict[str, str] | None = None) -> Embedder | None:
    """Gemini if a key is set, else the local model, else None (the lexical index is used)."""
    env = dict(os.environ) if env is None else env
    wanted = env.get("BATON_PLAN_EMBEDDER", "auto").strip().lower() or "auto"
    if wanted not in ("auto", "gemini", "local", "lexical"):
        raise SemanticConfigError(
            f"BATON_PLAN_EMBEDDER: one of auto, gemini, local, lexical, not {wanted!r}"
        )
    key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
    if wanted in ("auto", "gemini") and key:
        base = env.get("BATON_GEMINI_BASE_URL") or None
        return GeminiEmbedder(
            key, env.get("BATON_GEMINI_EMBEDDING_MODEL") or GEMINI_EMBEDDING_MODEL, base
        )
    if wanted == "gemini":
        raise SemanticConfigError("BATON_PLAN_EMBEDDER=gemini needs GEMINI_API_KEY")
    if wanted in ("auto", "local"):
        try:
            return LocalEmbedder()
        except Exception as exc:  # not installed, or its files are missing: say so, go lexical
            if wanted == "local":
                raise SemanticConfigError(f"the local embedding model cannot load: {exc}") from None
            log.warning("local embedding model unavailable (%s): lexical matching instead", exc)
    return None


def describe(embedder: Embedder | None) -> str:
    return embedder.name if embedder is not None else "lexical"


def as_floats(values: Any) -> list[float]:
    return [round(float(x), 6) for x in values]
