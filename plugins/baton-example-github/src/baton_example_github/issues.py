"""``github.create_issue``: open an issue through the GitHub REST API (or one that speaks it)."""

from __future__ import annotations

import os
from typing import Any

import httpx
from baton_common.catalogue import ToolSpec

SPEC = ToolSpec(
    name="github.create_issue",
    description="Open a GitHub issue (a ticket or bug report) in a repository: title, body, labels.",
    input_schema={
        "type": "object",
        "properties": {
            "repo": {"type": "string", "pattern": "^[\\w.-]+/[\\w.-]+$"},
            "title": {"type": "string", "minLength": 1, "maxLength": 256},
            "body": {"type": "string"},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"number": {"type": "integer"}, "url": {"type": "string"}},
        "required": ["number"],
    },
    side_effect="write",
    keywords=("github", "issue", "ticket", "bug"),
    text_field="title",
    primary_output="url",
)


class CreateIssue:
    """The tool: one POST per call, the step's idempotency key sent along."""

    spec = SPEC

    async def run(self, input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        from baton_common.egress import EgressRefused
        from baton_executor.tools.base import ToolError

        base = os.environ.get("BATON_GITHUB_API_URL", "https://api.github.com").rstrip("/")
        repo = input.get("repo") or os.environ.get("BATON_GITHUB_REPO", "octo/demo")
        headers = {"Idempotency-Key": ctx.idempotency_key, "Accept": "application/vnd.github+json"}
        if token := ctx.secret("GITHUB_TOKEN"):  # needs `secrets` and BATON_TOOL_SECRETS
            headers["Authorization"] = f"Bearer {token}"
        body = {k: v for k, v in input.items() if k in ("title", "body", "labels")}
        try:  # ctx.http: the engine's egress guard checks every connection
            async with ctx.http(timeout=ctx.timeout_s) as client:
                resp = await client.post(f"{base}/repos/{repo}/issues", json=body, headers=headers)
        except EgressRefused as exc:
            raise ToolError(f"GitHub not reached: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:
            raise ToolError(f"GitHub unreachable: {exc}") from None
        if resp.status_code >= 400:
            raise ToolError(
                f"GitHub answered {resp.status_code}: {resp.text[:200]}",
                retryable=resp.status_code >= 500 or resp.status_code == 429,
            )
        data = resp.json()
        return {"number": int(data["number"]), "url": str(data.get("html_url", ""))}
