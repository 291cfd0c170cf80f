"""An idle planner holds neither the local embedding model nor the Gemini SDK: WordLlama (numpy,
tokenizers, weights) loads on the first request it embeds, google-genai with the first client
(issue 32). Checked in a fresh interpreter: other tests load both into this one."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import asyncio, sys
import baton_planner.main
from baton_planner.semantic import select_embedder

embedder = select_embedder({})
heavy = ("numpy", "wordllama", "google.genai")
print(embedder.name, [m for m in heavy if m in sys.modules])
vectors = asyncio.run(embedder.embed(["book a review", "schedule a review"]))
print(len(vectors[0]), [m for m in heavy if m in sys.modules])
"""


def test_the_local_model_loads_on_first_use() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    started, used = done.stdout.splitlines()
    assert started == "local []"
    assert used == "256 ['numpy', 'wordllama']"
