"""The built-in tools by name, as the executor's workers look them up."""

from __future__ import annotations

import functools
import logging

from baton_executor.tools.base import Tool
from baton_executor.tools.debug import DebugLog
from baton_executor.tools.files import FilesDelete, FilesRead, FilesWrite
from baton_executor.tools.http import HttpRequest
from baton_executor.tools.misc import MockAgent, MockCritical, TimeSleep
from baton_executor.tools.text import JsonQuery, TextTemplate

log = logging.getLogger(__name__)


def builtin_tools() -> dict[str, Tool]:
    """A fresh instance of every built-in tool, keyed by its catalogue name."""
    tools: list[Tool] = [
        HttpRequest(),
        TextTemplate(),
        JsonQuery(),
        FilesRead(),
        FilesWrite(),
        FilesDelete(),
        TimeSleep(),
        MockAgent(),
        MockCritical(),
        DebugLog(),
    ]
    try:
        # Imported lazily: llm.py is developed separately and pulls in the model SDK.
        from baton_executor.tools.llm import LlmGenerate
    except ImportError as exc:
        log.warning("llm.generate unavailable: %s", exc)
    else:
        tools.append(LlmGenerate())
    return {tool.spec.name: tool for tool in tools}


@functools.cache
def _registry() -> dict[str, Tool]:
    """One shared set of instances for ``get_tool``."""
    return builtin_tools()


def get_tool(name: str) -> Tool:
    """The built-in tool called ``name``; ``KeyError`` names the known ones otherwise."""
    tools = _registry()
    try:
        return tools[name]
    except KeyError:
        known = ", ".join(sorted(tools))
        raise KeyError(f"unknown tool {name!r}; built-in tools are: {known}") from None
