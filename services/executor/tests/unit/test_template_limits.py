"""``text.template`` makes bounded text: no giant widths, no specs from values, no huge output."""

from __future__ import annotations

import time
from typing import Any

import pytest
from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.text import MAX_TEXT_CHARS, TextTemplate

CTX = ToolContext(
    execution_id="exec-1", step_id="a", attempt=1, idempotency_key="exec-1:a", timeout_s=5.0
)


async def render(template: str, **values: Any) -> str:
    out = await TextTemplate().run({"template": template, "values": values}, CTX)
    return str(out["text"])


async def test_ordinary_format_specs_still_work() -> None:
    text = await render(
        "{a:>6}|{b:.2f}|{c:,}|{d:08.3f}|{a:*^9}", a="ab", b=3.14159, c=1234567, d=2.5
    )
    assert text == "    ab|3.14|1,234,567|0002.500|***ab****"
    assert len(await render("{a:>1000}", a="x")) == 1000


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{a:>999999999}", "widths and precisions are at most 1000"),
        ("{b:.99999999f}", "widths and precisions are at most 1000"),
        ("{a:0>1001}", "widths and precisions are at most 1000"),
        ("{a:>{w}}", "a format spec cannot hold a placeholder"),
        ("{a:{b}}", "a format spec cannot hold a placeholder"),
    ],
)
async def test_giant_or_nested_format_specs_are_refused(template: str, reason: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError, match=reason) as err:
        await render(template, a="x", b=1.5, w=999999999)
    assert err.value.retryable is False  # the same template fails the same way every time
    assert time.perf_counter() - started < 1.0  # nothing was built: a width of 1e9 is a GB


async def test_the_rendered_text_is_bounded() -> None:
    value = "y" * 10_000
    assert len(await render("{v}" * (MAX_TEXT_CHARS // 10_000), v=value)) == MAX_TEXT_CHARS
    with pytest.raises(ToolError, match=f"longer than {MAX_TEXT_CHARS} characters"):
        await render("{v}" * 100_000, v=value)  # a gigabyte of copies, stopped at the first MB
