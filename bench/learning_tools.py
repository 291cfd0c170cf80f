"""The tools the learning bench adds as agent files: two weather services that take the same
input, the first of which was retired (it fails for good, HTTP 410 style, and says a retry
cannot help). The offline planner picks the retired one for "look up the weather …" (its name
matches); failure patterns must move the planner to the other one."""

from __future__ import annotations

from typing import Any

from baton_executor.tools.base import ToolError

WEATHER = """
name: weather.{name}
description: Look up the weather forecast of a city.
keywords: [weather, forecast]
input_schema: {{type: object, properties: {{city: {{type: string}}}}, required: [city]}}
output_schema: {{type: object}}
implementation:
  python: "bench.learning_tools:{function}"
"""


def agent_files() -> dict[str, str]:
    """File name to content, for the bench engine's agents folder."""
    return {
        "weather-lookup.yaml": WEATHER.format(name="lookup", function="retired"),
        "weather-report.yaml": WEATHER.format(name="report", function="forecast"),
    }


def retired(input: dict[str, Any]) -> dict[str, Any]:
    raise ToolError("weather.lookup: this API version was retired (HTTP 410 Gone)", retryable=False)


def forecast(input: dict[str, Any]) -> dict[str, Any]:
    return {"city": input.get("city"), "forecast": "mild, light wind", "source": "weather.report"}
