"""Call rates as people write them (``"60/min"``, ``"5/s"``, ``"100/10s"``): a token bucket's size
and the seconds it refills over. Tools declare one (the catalogue, agent files) and a workspace's
policy sets its own per tool."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_S = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class Rate(BaseModel):
    """``count`` calls per ``per_s`` seconds: a token bucket of ``count`` refilled over ``per_s``."""

    model_config = ConfigDict(frozen=True)
    count: float = Field(ge=0)
    per_s: float = Field(gt=0)

    @classmethod
    def parse(cls, text: str | float | dict[str, Any] | Rate) -> Rate:
        """``"60/min"``, ``"5/s"``, ``"100/10s"``, a number (per second) or ``{count, per_s}``."""
        if isinstance(text, Rate):
            return text
        if isinstance(text, dict):
            return cls.model_validate(text)
        if isinstance(text, int | float):
            if text < 0:
                raise ValueError("a rate cannot be below zero")
            return cls(count=float(text), per_s=1.0)
        match = _RATE.match(str(text))
        if not match:
            raise ValueError(f"cannot read rate {text!r}: use e.g. '5/s', '60/min' or '1000/h'")
        count, mult, unit = match.groups()
        return cls(count=float(count), per_s=float(mult or 1) * _UNIT_S[unit])

    @property
    def per_second(self) -> float:
        return self.count / self.per_s

    def __str__(self) -> str:
        return f"{self.count:g}/{self.per_s:g}s"
