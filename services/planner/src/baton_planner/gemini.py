"""The Gemini planner: the model writes the plan as structured JSON; invalid plans are repaired.

The prompt gives the request, the inputs' names, the catalogue (names, descriptions, input
schemas) and the plan format. The reply is checked with ``validate_plan``; when it is rejected,
the problems are sent back with the rejected plan and the model tries again, up to
``max_repairs`` times, before ``PlanningError`` lists what was still wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.gemini import GeminiClient, GeminiError, GeminiInvalidJson, GeminiUnavailable
from baton_common.plans import Plan, PlanInvalid, validate_plan

from baton_planner.offline import PlanMemory
from baton_planner.planners import PlanningError

SYSTEM = (
    "You are the planner of Baton, a workflow engine. You turn a plain-language request into a "
    "plan: a directed acyclic graph of steps, each one call of a tool from the catalogue. "
    "Answer with the plan as one JSON object and nothing else."
)

PLAN_FORMAT = """\
Plan format (JSON):
{"name": "short name", "description": "one sentence",
 "steps": [{"id": "snake_case_id", "tool": "<tool name from the catalogue>",
            "input": {<fields of the tool's input schema>},
            "depends_on": ["<ids of steps that must finish first>"],
            "description": "what this step does"}],
 "outputs": {"<name>": "${steps.<id>.output.<field>}"}}
Rules:
- Use only tools from the catalogue; each input must satisfy the tool's input schema (no other fields).
- Step ids are unique, short and made of letters, digits and underscores (e.g. collect_api, summarise).
- Read an earlier step's output with "${steps.<id>.output.<field>}" and an execution input with
  "${input.<name>}". A string that is exactly one reference keeps the value's type; a reference
  inside longer text is inserted as text. Reading a step's output makes it a dependency.
- Steps that do not need each other's results must not depend on each other: they run in parallel.
- For a list of similar items ("for A, B and C"), use one step per item, then one step that combines them.
- Put the final results in "outputs"."""


def plan_schema(tool_names: list[str]) -> dict[str, Any]:
    """The JSON schema Gemini's structured output must follow."""
    step = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "tool": {"type": "string", "enum": tool_names},
            "input": {"type": "object", "additionalProperties": True},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
        },
        "required": ["id", "tool", "input"],
    }
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "steps": {"type": "array", "items": step, "minItems": 1},
            "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["steps"],
    }


class GeminiPlanner:
    """Plans with Gemini, validating and repairing its answer."""

    name = "gemini"

    def __init__(
        self,
        client: GeminiClient,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        max_repairs: int = 2,
        memory: PlanMemory | None = None,
    ) -> None:
        self.client = client
        self.catalogue = catalogue
        self.max_repairs = max_repairs
        self.memory = memory if memory is not None else PlanMemory()

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Plan data for ``request`` that passes ``validate_plan``."""
        if not request or not request.strip():
            raise PlanningError("the request is empty: say in words what should be done")
        remembered = self.memory.recall_valid(request, self.catalogue, inputs)
        if remembered is not None:
            return remembered
        prompt = self.prompt(request, inputs)
        problems: list[str] = []
        for _ in range(self.max_repairs + 1):
            data, problems = await self._attempt(prompt, inputs)
            if not problems:
                return data
            prompt = repair_prompt(prompt, data, problems)
        raise PlanningError(
            f"Gemini ({self.client.model}) gave no valid plan in {self.max_repairs + 1} attempts: "
            + "; ".join(problems),
            problems=problems,
        )

    def prompt(self, request: str, inputs: dict[str, Any]) -> str:
        """The first prompt: request, inputs, catalogue and plan format."""
        names = ", ".join(sorted(inputs)) or "none"
        return (
            f"Request: {request.strip()}\n\nExecution inputs (use as ${{input.<name>}}): {names}\n\n"
            f"Tool catalogue:\n{catalogue_text(self.catalogue)}\n\n{PLAN_FORMAT}"
        )

    async def _attempt(self, prompt: str, inputs: dict[str, Any]) -> tuple[Any, list[str]]:
        """One answer and its problems (none when it is a valid plan)."""
        try:
            data = await self.client.generate_json(
                prompt, system=SYSTEM, response_schema=plan_schema(self.catalogue.names())
            )
        except GeminiInvalidJson as exc:
            return exc.text, [f"the answer was not JSON: {exc.text[:200]!r}"]
        except GeminiUnavailable as exc:
            raise PlanningError(f"Gemini cannot be reached: {exc}", transient=True) from None
        except GeminiError as exc:
            raise PlanningError(f"Gemini could not plan: {exc}", transient=exc.retryable) from None
        if not isinstance(data, dict):
            return data, ["the answer must be one JSON object with a 'steps' list"]
        data = _drop_nulls(data)
        try:
            validate_plan(data, self.catalogue, inputs)
        except PlanInvalid as exc:
            return data, [str(p) for p in exc.problems]
        return data, []

    def remember(self, request: str, plan: Mapping[str, Any] | Plan) -> None:
        """Learn a plan that worked: the same request gets it next time, without asking."""
        self.memory.remember(request, plan)


def catalogue_text(catalogue: Catalogue) -> str:
    """The tools as compact JSON lines: name, description, input schema, outputs."""
    lines = []
    for spec in catalogue.all():
        entry = {
            "name": spec.name,
            "description": spec.description,
            "side_effect": spec.side_effect,
            "input_schema": spec.input_schema,
            "output_fields": sorted(spec.output_schema.get("properties", {})),
            "primary_output": spec.primary_output,
        }
        lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(lines)


def repair_prompt(prompt: str, rejected: Any, problems: list[str]) -> str:
    """The first prompt plus the rejected answer and why it was rejected."""
    shown = rejected if isinstance(rejected, str) else json.dumps(rejected, ensure_ascii=False)
    listed = "\n".join(f"- {p}" for p in problems)
    base = prompt.split("\n\nYour previous plan was rejected", 1)[0]
    return (
        f"{base}\n\nYour previous plan was rejected. Previous plan:\n{shown}\n\n"
        f"Validation errors:\n{listed}\n\nReturn the whole corrected plan as one JSON object."
    )


def _drop_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """Models emit null for optional fields; the plan model wants them absent."""
    clean = {k: v for k, v in data.items() if v is not None}
    if isinstance(clean.get("steps"), list):
        clean["steps"] = [
            {k: v for k, v in s.items() if v is not None} if isinstance(s, dict) else s
            for s in clean["steps"]
        ]
    return clean
