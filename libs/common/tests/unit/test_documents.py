"""Documents from users are read within limits: no alias bomb, no deep nesting, no huge numbers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from baton_common import documents
from baton_common.documents import (
    MAX_DEPTH,
    DocumentRefused,
    check_shape,
    load_json,
    load_yaml,
)

ROOT = Path(__file__).resolve().parents[4]


def alias_bomb(levels: int = 9) -> str:
    """A kilobyte that means 9**levels values once its aliases are followed."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_while_composing_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []
    original = documents._LimitedConstructor.construct_document
    monkeypatch.setattr(
        documents._LimitedConstructor,
        "construct_document",
        lambda self, node: built.append(node) or original(self, node),
    )
    started = time.perf_counter()
    with pytest.raises(DocumentRefused, match=r"aliases \(\*a0\) are not accepted.*line 2"):
        load_yaml(alias_bomb())
    assert built == []  # refused at the first alias: nothing constructed
    assert time.perf_counter() - started < 1.0  # generous: the bomb itself is a billion values


def test_any_alias_is_refused_and_anchors_alone_pass() -> None:
    with pytest.raises(DocumentRefused, match="aliases"):
        load_yaml("base: &b {retries: 3}\nstep:\n  <<: *b\n")
    assert load_yaml("base: &b {retries: 3}\n") == {"base": {"retries": 3}}


@pytest.mark.parametrize(
    "path",
    [
        "bench/planner_suite.yaml",
        "docs/examples/agents/headline.yaml",
        "deploy/otel-collector.yaml",
    ],
)
def test_ordinary_documents_read_as_the_safe_loader_reads_them(path: str) -> None:
    text = (ROOT / path).read_text()
    assert load_yaml(text) == yaml.safe_load(text)


def _nested(depth: int, flow: bool) -> str:
    """``depth`` levels of values, the innermost scalar counted."""
    if flow:
        return "[" * (depth - 1) + "1" + "]" * (depth - 1)
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth - 2)) + f"{'  ' * (depth - 2)}k: 1\n"


@pytest.mark.parametrize("flow", [True, False])
def test_nesting_is_bounded(flow: bool) -> None:
    assert load_yaml(_nested(MAX_DEPTH, flow)) is not None
    with pytest.raises(DocumentRefused, match=f"nested more than {MAX_DEPTH} levels"):
        load_yaml(_nested(MAX_DEPTH + 1, flow))


def test_very_deep_yaml_is_refused_without_exhausting_the_stack() -> None:
    with pytest.raises((DocumentRefused, yaml.YAMLError)):
        load_yaml("- " * 200_000 + "1")
    with pytest.raises((DocumentRefused, yaml.YAMLError)):
        load_yaml("[" * 200_000)


def test_the_number_of_values_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_NODES", 100)
    assert len(load_yaml("[" + ", ".join(["1"] * 98) + "]")) == 98
    with pytest.raises(DocumentRefused, match="more than 100 values"):
        load_yaml("[" + ", ".join(["1"] * 100) + "]")
    with pytest.raises(DocumentRefused, match="more than 100 values"):
        load_json("[" + ", ".join(["1"] * 100) + "]")


def test_a_long_number_is_refused_and_short_ones_read_as_yaml_1_1_says() -> None:
    assert load_yaml("a: 1:30\nb: 0x1f\nc: 1.5e+3\nd: '1:1:1'") == {
        "a": 90,
        "b": 31,
        "c": 1500.0,
        "d": "1:1:1",
    }
    started = time.perf_counter()
    with pytest.raises(DocumentRefused, match="a number longer than 100 characters"):
        load_yaml("n: 1" + ":1" * 100_000)  # sexagesimal: quadratic big-integer arithmetic
    assert time.perf_counter() - started < 1.0
    assert load_yaml("n: '1" + ":1" * 100 + "'")["n"].startswith("1:1")


def test_a_document_is_bounded_in_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_DOCUMENT_CHARS", 1000)
    with pytest.raises(DocumentRefused, match="1001 characters; at most 1000"):
        load_yaml("a: " + "x" * 998)
    with pytest.raises(DocumentRefused, match="at most 1000"):
        load_json(b'"' + b"x" * 999 + b'"')


def test_deep_json_is_refused_clearly() -> None:
    assert isinstance(load_json("[" * MAX_DEPTH + "]" * MAX_DEPTH), list)
    with pytest.raises(DocumentRefused, match="nested more than"):
        load_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(DocumentRefused, match="nested more than"):
        load_json("[" * 100_000 + "]" * 100_000)  # past the decoder's own recursion guard


def test_parsed_data_is_checked_without_recursion() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    with pytest.raises(DocumentRefused, match=f"nested more than {MAX_DEPTH} levels"):
        check_shape({"steps": deep})
    check_shape({"a": [{"b": [1, 2, {"c": "d"}]}], "e": ("f",)})


def test_a_mock_profile_is_read_within_the_same_limits() -> None:
    from baton_common.simulation import SimulationInvalid, parse_profile

    assert parse_profile("tools:\n  http.request: {output: {status: 200}}\n").tools
    with pytest.raises(SimulationInvalid, match="aliases"):
        parse_profile(alias_bomb())
    with pytest.raises(SimulationInvalid, match="nested more than"):
        parse_profile({"tools": {"http.request": {"output": _deep_dict(MAX_DEPTH)}}})


def _deep_dict(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels):
        value = {"x": value}
    return value
