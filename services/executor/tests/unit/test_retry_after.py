"""An upstream's 429 with ``Retry-After`` reaches the executor as ``retry_after_s``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import ThreadingHTTPServer

import pytest
from baton_common.egress import EgressGuard, parse_allow
from baton_common.gemini import GeminiClient
from baton_common.testing import FakeGemini, LocalHandler, serving
from baton_executor.tools.base import ToolContext, ToolError, retry_after
from baton_executor.tools.http import HttpRequest
from baton_executor.tools.llm import LlmGenerate

# The test server listens on loopback: allowed on purpose.
CTX = ToolContext(
    execution_id="e1",
    step_id="s",
    attempt=1,
    idempotency_key="e1:s",
    egress=EgressGuard(parse_allow("127.0.0.1")),
)


class _Busy(LocalHandler):
    """``/<status>?after=<Retry-After value>``"""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?after=")
        headers = {"Retry-After": query.replace("%20", " ")} if query else {}
        self.answer(int(path.strip("/")), b"busy", headers)


@pytest.fixture(scope="module")
def busy() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Busy)) as httpd:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.mark.parametrize(("path", "wait"), [("/429?after=7", 7.0), ("/503?after=2", 2.0),
                                            ("/429", None), ("/500?after=9", None)])  # fmt: skip
async def test_http_429_and_503_carry_retry_after(busy: str, path: str, wait: float | None) -> None:
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": busy + path}, CTX)
    assert err.value.retryable and err.value.retry_after_s == wait


def test_retry_after_reads_seconds_and_http_dates_and_caps_them() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after(later) or 0) <= 120
    assert retry_after("0") == 0.0 and retry_after("nonsense") is None
    assert retry_after("999999") == 3600.0


async def test_gemini_429_says_when_to_retry(fake_gemini: FakeGemini) -> None:
    fake_gemini.reply_error(429, "Quota exceeded. Please retry in 27.5s.", "RESOURCE_EXHAUSTED")
    tool = LlmGenerate(GeminiClient(api_key="k", base_url=fake_gemini.url, timeout_s=5))
    with pytest.raises(ToolError) as err:
        await tool.run({"prompt": "hi"}, CTX)
    assert err.value.retryable and err.value.retry_after_s == 27.5
