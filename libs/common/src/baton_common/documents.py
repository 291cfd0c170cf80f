"""Documents from users (plans, mock profiles, webhook bodies) read within limits.

A parser can be made to burn the CPU by a small input: a YAML alias bomb (a kilobyte of
``&a [*b, *b, …]`` that means a billion values), nesting deep enough to exhaust the stack, or a
YAML 1.1 sexagesimal number (``1:2:3:…``, read with quadratic big-integer arithmetic). So:

- YAML aliases (``*name``) are refused while the document is composed, before anything is built;
  a plan has no need of them, and a budget of aliases would not stop a bomb (each level
  multiplies). Anchors without aliases are harmless and pass.
- every document is at most ``MAX_DOCUMENT_CHARS`` long, at most ``MAX_DEPTH`` levels deep and
  holds at most ``MAX_NODES`` values (mappings, lists and scalars), whether it comes as YAML, as
  JSON text, or already parsed (a JSON request body);
- a YAML number is at most ``MAX_NUMBER_CHARS`` long.

Scanning and parsing stay in libyaml (C) when it is installed; only composing, where the checks
live, is Python's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

MAX_DOCUMENT_CHARS = 1_000_000
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_NUMBER_CHARS = 100


class DocumentRefused(ValueError):
    """A document over a limit, or using a construct that is not accepted; says which."""


class _LimitedComposer(Composer):
    """Composes a node tree, refusing aliases and counting depth and nodes as it goes."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            raise DocumentRefused(
                f"YAML aliases (*{self.peek_event().anchor}) are not accepted: write the value "
                f"out (line {mark.line + 1})"
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise DocumentRefused(f"more than {MAX_NODES} values in one document")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise DocumentRefused(f"nested more than {MAX_DEPTH} levels deep (line {line})")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LimitedConstructor(SafeConstructor):
    """The safe constructor, with numbers of a bounded length."""

    def construct_yaml_int(self, node: Any) -> Any:
        _short_number(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: Any) -> Any:
        _short_number(node)
        return super().construct_yaml_float(node)


_LimitedConstructor.add_constructor("tag:yaml.org,2002:int", _LimitedConstructor.construct_yaml_int)
_LimitedConstructor.add_constructor(
    "tag:yaml.org,2002:float", _LimitedConstructor.construct_yaml_float
)


def _short_number(node: Any) -> None:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise DocumentRefused(
            f"a number longer than {MAX_NUMBER_CHARS} characters "
            f"(line {node.start_mark.line + 1}); quote it to keep it as text"
        )


try:  # libyaml scans and parses in C; the pure-Python parser is the fallback
    from yaml.cyaml import CParser

    _PARSER: tuple[type, ...] = (CParser,)
except ImportError:  # pragma: no cover - libyaml is in the wheels we install
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    _PARSER = (Reader, Scanner, Parser)


class LimitedLoader(_LimitedComposer, *_PARSER, _LimitedConstructor, Resolver):  # type: ignore[misc]
    """A safe YAML loader that refuses aliases and bounds depth, values and numbers."""

    def __init__(self, stream: str) -> None:
        first: Any = _PARSER[0]  # CParser, or Reader (Scanner and Parser take no stream)
        first.__init__(self, stream)
        for base in _PARSER[1:]:
            later: Any = base
            later.__init__(self)
        _LimitedComposer.__init__(self)
        _LimitedConstructor.__init__(self)
        Resolver.__init__(self)


def load_yaml(text: str, what: str = "document") -> Any:
    """One YAML document within the limits; ``DocumentRefused`` or ``yaml.YAMLError`` if not."""
    check_length(text, what)
    loader = LimitedLoader(text)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise DocumentRefused(f"{what}: nested too deeply") from None
    finally:
        loader.dispose()


def load_json(text: str | bytes, what: str = "document") -> Any:
    """JSON text within the limits; ``ValueError`` (``DocumentRefused`` for a limit) if not."""
    check_length(text, what)
    try:
        data = json.loads(text)
    except RecursionError:  # the C decoder's own guard, far below a crash but far above ours
        raise DocumentRefused(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
    check_shape(data, what)
    return data


def check_length(text: str | bytes, what: str = "document") -> None:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentRefused(
            f"{what}: {len(text)} characters; at most {MAX_DOCUMENT_CHARS} are read"
        )


def check_shape(value: Any, what: str = "document") -> None:
    """Parsed data (a JSON body, say) at most ``MAX_DEPTH`` deep with at most ``MAX_NODES``
    values. Iterative, so a deep value cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise DocumentRefused(f"{what}: more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise DocumentRefused(f"{what}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
