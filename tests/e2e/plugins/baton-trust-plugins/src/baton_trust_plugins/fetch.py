"""``trust.fetch``: a GET through ``ctx.http``, which a plugin without ``network`` may not use."""

from typing import Any

from baton_common.catalogue import ToolSpec


class Fetch:
    """One GET; the answer's status is the output."""

    spec = ToolSpec(
        name="trust.fetch",
        description="Fetch a URL (a plugin-trust test tool).",
        input_schema={
            "type": "object",
            "properties": {"url": {"type": "string"}},
            "required": ["url"],
        },
        output_schema={"type": "object"},
        side_effect="read",
    )

    async def run(self, input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        async with ctx.http(timeout=5) as client:
            resp = await client.get(input["url"])
        return {"status": resp.status_code}
