"""LLM prices per model, an installation setting, and what tokens cost at those prices.

``BATON_LLM_PRICES`` is a JSON object: model name to US dollars per million tokens in and out,
``{"gemini-2.5-flash": {"input": 0.30, "output": 2.50}}``. A model without a price costs
nothing in the figures (its tokens are still counted), so ``cost_usd`` is None when no model
used has a price. Prices are read on each figure, not kept in events: a corrected price
changes past figures too, the way a bill is recomputed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV = "BATON_LLM_PRICES"


class Price(BaseModel):
    """US dollars per million input and output tokens of one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: float = Field(ge=0, le=10_000)
    output: float = Field(ge=0, le=10_000)


class PricesInvalid(ValueError):
    """``BATON_LLM_PRICES`` does not read; the message says where."""


def parse_prices(raw: str | None) -> dict[str, Price]:
    """The prices of ``raw`` (the setting's text); {} when unset or empty."""
    if not raw or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise PricesInvalid(f"{ENV} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PricesInvalid(
            f'{ENV} must be an object: {{"model": {{"input": 0.3, "output": 2.5}}}} '
            "(US dollars per million tokens)"
        )
    prices = {}
    for model, value in data.items():
        try:
            prices[str(model)] = Price.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "price"
            raise PricesInvalid(f"{ENV}: {model}: {where}: {first['msg']}") from None
    return prices


def llm_prices(env: Mapping[str, str] | None = None) -> dict[str, Price]:
    """The installation's prices, from the environment."""
    return parse_prices((os.environ if env is None else env).get(ENV))


def cost_usd(
    usage: Iterable[tuple[str | None, int, int]], prices: Mapping[str, Price]
) -> float | None:
    """What ``(model, input tokens, output tokens)`` rows cost; None when no row's model has a
    price (nothing to say, which is not the same as free)."""
    total, priced = 0.0, False
    for model, tokens_in, tokens_out in usage:
        price = prices.get(model or "")
        if price is None:
            continue
        priced = True
        total += (tokens_in * price.input + tokens_out * price.output) / 1_000_000
    return round(total, 6) if priced else None
