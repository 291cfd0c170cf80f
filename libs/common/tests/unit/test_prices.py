"""LLM usage as tools report it, the installation's prices and what tokens cost at them, and
what agent files may declare about dry runs and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.agentfiles import AgentProblem, read_agent
from baton_common.prices import Price, PricesInvalid, cost_usd, llm_prices, parse_prices
from baton_common.toolstats import tokens_of, usage_of


def test_usage_reads_what_llm_tools_write() -> None:
    # what llm.generate and LLM agent files put in their output
    answer = {"text": "x", "model": "m1", "usage": {"input_tokens": 120, "output_tokens": 30}}
    used = usage_of(answer)
    assert (used.model, used.input_tokens, used.output_tokens, used.total) == ("m1", 120, 30, 150)
    assert tokens_of(answer) == 150
    # other shapes still count as a total
    assert tokens_of({"usage": {"total_tokens": 12}}) == 12
    assert tokens_of({"tokens": 3}) == 3
    for nothing in (
        "text",
        None,
        {"usage": {"input_tokens": -5}},
        {"usage": {"input_tokens": "9"}},
    ):
        assert tokens_of(nothing) == 0


def test_prices_parse_and_price_tokens() -> None:
    prices = parse_prices('{"m1": {"input": 0.5, "output": 2}, "m2": {"input": 1, "output": 1}}')
    assert prices["m1"] == Price(input=0.5, output=2)
    # 2 M in and 1 M out of m1: 1.00 + 2.00; an unpriced model adds nothing
    rows = [("m1", 2_000_000, 1_000_000), ("other", 5_000_000, 0)]
    assert cost_usd(rows, prices) == 3.0
    assert cost_usd([("other", 10, 10)], prices) is None  # nothing priced: unknown, not free
    assert cost_usd([], prices) is None
    assert parse_prices("") == {} == parse_prices(None) == llm_prices({})


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{oops", "BATON_LLM_PRICES is not JSON"),
        ("[1, 2]", "must be an object"),
        ('{"m": {"input": -1, "output": 1}}', "BATON_LLM_PRICES: m: input: Input should be"),
        ('{"m": {"input": 1}}', "m: output: Field required"),
        ('{"m": {"input": 1, "output": 1, "cached": 2}}', "m: cached: Extra inputs"),
    ],
)
def test_a_bad_price_setting_says_what_is_wrong(raw: str, says: str) -> None:
    with pytest.raises(PricesInvalid, match=says.replace("(", r"\(")):
        parse_prices(raw)


AGENT = """
name: quote.lookup
description: Look up a quote.
input_schema: {type: object, properties: {text: {type: string}}, required: [text]}
side_effect: SIDE
implementation: {python: "json:dumps"}
"""


def test_an_agent_file_declares_dry_run_output_and_cache_ttl(tmp_path: Path) -> None:
    path = tmp_path / "q.yaml"
    path.write_text(
        AGENT.replace("SIDE", "read")
        + "dry_run: simulate\ndry_run_output: {price: 0, symbol: '${input.text}'}\n"
        + "cache_ttl_s: 600\n"
    )
    spec = read_agent(path).spec()
    assert spec.dry_run == "simulate" and spec.cache_ttl_s == 600
    assert spec.dry_run_output == {"price": 0, "symbol": "${input.text}"}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("cache_ttl_s: 60\n", "cache_ttl_s: only a read tool's results are cached"),
        ("dry_run: real\n", "dry_run: a write tool is always simulated in a dry run"),
    ],
)
def test_what_only_a_read_may_declare_is_refused_for_a_write(
    tmp_path: Path, extra: str, says: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(AGENT.replace("SIDE", "write") + extra)
    with pytest.raises(AgentProblem, match=says):
        read_agent(path)
