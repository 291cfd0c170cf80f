"""Tool rate limits in the catalogue."""

from __future__ import annotations

import pytest
from baton_common.catalogue import DEFAULT_CATALOGUE, ToolSpec
from pydantic import ValidationError


def _spec(**rate: object) -> ToolSpec:
    return ToolSpec(name="t", description="d", input_schema={}, output_schema={}, **rate)  # type: ignore[arg-type]


def test_llm_generate_declares_60_per_minute() -> None:
    spec = DEFAULT_CATALOGUE.get("llm.generate")
    assert spec is not None and (spec.rate().count, spec.rate().per_s) == (60, 60)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "rate", [{"rate_limit": "-1/s"}, {"rate_limit": "fast"}, {"rate_limit_per_s": -1}]
)
def test_a_rate_below_zero_or_unreadable_is_an_error(rate: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _spec(**rate)


def test_the_old_per_second_field_still_reads() -> None:
    rate = _spec(rate_limit_per_s=2).rate()
    assert rate is not None and rate.per_second == 2
    assert _spec().rate() is None
