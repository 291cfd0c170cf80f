"""Tools found by discovery (agent files, plugins' entry points), built by each worker from the
catalogue event: the event says how a tool runs, the worker makes the callable here.

``LiveTools`` is what the worker looks tools up in: the built-ins, then whatever the catalogue in
force lists, built once per catalogue. A tool that cannot be built fails its step with the
reason, never the worker.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from baton_common import contracts as c
from baton_common.catalogue import ToolSpec
from baton_common.discovery import installed_tools, load_tool, local_tools
from baton_common.egress import EgressRefused, read_capped
from baton_common.followed import current_catalogue

from baton_executor.tools.base import Tool, ToolContext, ToolError, retry_after

MAX_ANSWER_BYTES = 1024 * 1024  # an output larger than this could not be published anyway


class HttpAgent:
    """``implementation: {http: {url, method, headers?}}``: the input goes as JSON, the JSON
    answer is the output; the step's idempotency key goes as ``Idempotency-Key``."""

    def __init__(self, spec: ToolSpec, impl: Mapping[str, Any]) -> None:
        self.spec = spec
        self.url = str(impl["url"])
        self.method = str(impl.get("method") or "POST")
        self.headers = dict(impl.get("headers") or {})

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any:
        status, headers, body = await self._call(input, ctx)
        if status >= 400:
            raise ToolError(
                f"{self.spec.name}: {self.url} answered {status}: {body[:300]}",
                retryable=status >= 500 or status == 429,
                retry_after_s=retry_after(headers.get("Retry-After")),
            )
        try:
            return json.loads(body)
        except ValueError:
            raise ToolError(
                f"{self.spec.name}: {self.url} did not answer JSON", retryable=False
            ) from None

    async def _call(
        self, input: dict[str, Any], ctx: ToolContext
    ) -> tuple[int, httpx.Headers, str]:
        """Status, headers and body (at most ``MAX_ANSWER_BYTES`` read) through the egress guard."""
        headers = {**self.headers, "Idempotency-Key": ctx.idempotency_key}
        query = self.method in ("GET", "DELETE")  # no body: the input goes as query parameters
        try:
            async with ctx.http(timeout=ctx.timeout_s) as client:
                request = client.build_request(
                    self.method,
                    self.url,
                    headers=headers,
                    params=input if query else None,
                    json=None if query else input,
                )
                resp = await client.send(request, stream=True)
                try:
                    body, truncated = await read_capped(resp, MAX_ANSWER_BYTES)
                finally:
                    await resp.aclose()
        except EgressRefused as exc:
            raise ToolError(f"{self.spec.name}: {self.url}: {exc}", retryable=False) from None
        except httpx.HTTPError as exc:
            raise ToolError(f"{self.spec.name}: {type(exc).__name__}: {exc}") from None
        if truncated:
            raise ToolError(
                f"{self.spec.name}: {self.url} answered more than {MAX_ANSWER_BYTES} bytes",
                retryable=False,
            )
        return resp.status_code, resp.headers, body.decode(resp.encoding or "utf-8", "replace")


class PythonAgent:
    """``implementation: {python: "package.module:function"}``: ``function(input)`` or
    ``function(input, ctx)``, plain or async, returns the output."""

    def __init__(self, spec: ToolSpec, target: str) -> None:
        self.spec = spec
        module, _, attr = target.partition(":")
        self.fn = getattr(importlib.import_module(module), attr)
        kinds = [p.kind for p in inspect.signature(self.fn).parameters.values()]
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.takes_ctx = (
            sum(k in positional for k in kinds) >= 2 or inspect.Parameter.VAR_POSITIONAL in kinds
        )

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any:
        args = (input, ctx) if self.takes_ctx else (input,)
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args)
        return await asyncio.to_thread(self.fn, *args)


class _Blank(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), "") if isinstance(key, str) else ""


class LlmAgent:
    """``implementation: {llm: {prompt, model?}}``: the prompt's ``{field}``s are filled from the
    input and ``llm.generate`` answers it with ``model`` when given, else the configured one (the
    model's text is the output's ``text``, the model that answered its ``model``)."""

    def __init__(self, spec: ToolSpec, impl: Mapping[str, Any]) -> None:
        from baton_executor.tools.llm import LlmGenerate

        self.spec = spec
        self.prompt = str(impl["prompt"])
        self.model = str(impl["model"]) if impl.get("model") else None
        self.llm = LlmGenerate()

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any:
        prompt = _Blank().format(self.prompt, **input)
        answer = await self.llm.run({"prompt": prompt}, ctx, model=self.model)
        return {**answer, "requested_model": self.model} if self.model else answer


def build(entry: Mapping[str, Any]) -> Tool:
    """The callable tool for one catalogue entry."""
    spec = ToolSpec.model_validate(entry["spec"])
    impl = entry.get("implementation") or {}
    if "http" in impl:
        return HttpAgent(spec, impl["http"])
    if "python" in impl:
        return PythonAgent(spec, impl["python"])
    if "llm" in impl:
        return LlmAgent(spec, impl["llm"])
    if "entry_point" in impl:
        tool: Tool = load_tool(impl["entry_point"])
        return tool
    raise ValueError(f"no known implementation in {sorted(impl)}")


class _Broken:
    """A discovered tool this worker could not build: each call fails with the reason."""

    def __init__(self, spec: ToolSpec, reason: str) -> None:
        self.spec, self.reason = spec, reason

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any:
        raise ToolError(
            f"{self.spec.name} cannot run on this worker: {self.reason}", retryable=False
        )


class LiveTools:
    """The built-ins, then the catalogue's discovered tools (rebuilt when the catalogue changes)."""

    def __init__(
        self, builtins: dict[str, Tool], agents_folder: Path | None = None, mcp: Any = None
    ) -> None:
        self.builtins = builtins
        self.agents_folder = agents_folder  # this worker's own (default: $BATON_AGENTS_DIR)
        self.mcp = mcp  # mcp.tool.McpTools: an MCP server's tools, reached as registered
        self._digest: str | None = None
        self._built: dict[str, Tool] = {}
        self._local: dict[str, dict[str, Any]] = {}
        self._installed: frozenset[str] = frozenset()

    def get(self, name: str) -> Tool | None:
        if name in self.builtins:
            return self.builtins[name]
        event = current_catalogue()
        if event is None:
            return None
        if event.digest != self._digest:  # a new catalogue: look at what this worker has again
            self._built, self._digest = {}, event.digest
            self._local = local_tools(self.agents_folder)
            self._installed = installed_tools()
        if name not in self._built:
            entry = _entry(event, name)
            if entry is None:
                return None
            self._built[name] = self._build(entry)
        return self._built[name]

    def _build(self, announced: Mapping[str, Any]) -> Tool:
        """The tool as this worker's own sources define it; the catalogue only names it."""
        name = announced["spec"]["name"]
        impl = announced.get("implementation") or {}
        if "mcp" in impl and self.mcp is not None:  # the registry's store says how to reach it
            return self.mcp.build(ToolSpec.model_validate(announced["spec"]), impl["mcp"])  # type: ignore[no-any-return]
        own = self._local.get(name)
        target = impl.get("entry_point")
        if own is None and target in self._installed:  # code installed here, imported now
            own = {"spec": announced["spec"], "implementation": {"entry_point": target}}
        if own is None:
            spec = ToolSpec.model_validate(announced["spec"])
            return _Broken(spec, "not installed here (no entry point or agent file of that name)")
        return _safe_build(own)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


def _entry(event: c.CatalogueChanged, name: str) -> dict[str, Any] | None:
    return next((e for e in event.tools if e.get("spec", {}).get("name") == name), None)


def _safe_build(entry: Mapping[str, Any]) -> Tool:
    try:
        return build(entry)
    except (Exception, SystemExit) as exc:
        spec = ToolSpec.model_validate(entry["spec"])
        return _Broken(spec, f"{type(exc).__name__}: {exc}")
