"""The model planner: a language model (Gemini, or any OpenAI-compatible server) writes the plan as
structured JSON; invalid plans are repaired.

The prompt gives the request, the inputs' names, the catalogue (names, descriptions, input
schemas) and the plan format. The reply is checked with ``validate_plan``; when it is rejected,
the problems are sent back with the rejected plan and the model tries again, up to
``max_repairs`` times (``BATON_PLANNER_MAX_REPAIRS``, default 2). One loop for every model: the
client (``baton_common.chatmodel``) is what differs.

Questions, not dead ends: the model may answer with a question instead of a plan (the schema's
alternative) when it cannot plan with confidence, and a model whose repairs give up has not
understood the request either. Both are a ``PlanRefused``, which the planner service turns into
the same question to the person as the offline planner's refusals (``questions.py``); the answer
completes the request and the model plans it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.chatmodel import (
    ChatModel,
    Completion,
    ModelError,
    ModelInvalidJson,
    ModelUnavailable,
)
from baton_common.plans import Plan, PlanInvalid, validate_plan

from baton_planner.offline import PlanMemory
from baton_planner.offline.explaining import PlanRefused
from baton_planner.planners import Answer, PlanningError

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
- Put the final results in "outputs".
- Do not guess: when the request cannot be planned with confidence (what it works on, where
  results go or a value it needs is missing, or no tool fits), answer with a question instead:
  {"question": {"question": "what to ask the person", "understood": ["what you understood"],
   "missing": ["what is missing"], "choices": ["likely answers, if there are some"]}}
  Ask only where a person would have to ask too."""


# What ModelPlanner.tally counts: plans made, of them repaired, plans given up on, model calls,
# tokens in and out.
TALLIED = ("plans", "repaired", "failed", "asked", "attempts", "input_tokens", "output_tokens")
ASKING = "answer the question: the request is planned again with your answer"
TEXTS = {"type": "array", "items": {"type": "string"}}
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "understood": TEXTS, "missing": TEXTS,
                   "choices": TEXTS},
    "required": ["question"],
}  # fmt: skip


def plan_schema(tool_names: list[str]) -> dict[str, Any]:
    """The JSON schema the model's structured output must follow."""
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
            "question": QUESTION_SCHEMA,  # instead of steps, when it cannot plan with confidence
        },
        "anyOf": [{"required": ["steps"]}, {"required": ["question"]}],
    }


class ModelPlanner:
    """Plans with a language model, validating and repairing its answer."""

    def __init__(
        self,
        client: ChatModel,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        max_repairs: int = 2,
        memory: PlanMemory | None = None,
    ) -> None:
        self.client = client
        self.name = client.provider
        self.catalogue = catalogue
        self.max_repairs = max_repairs
        self.memory = memory if memory is not None else PlanMemory()
        # What this process's planning spent and needed: the planner's /metrics.
        self.tally = dict.fromkeys(TALLIED, 0)

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Plan data for ``request`` that passes ``validate_plan``."""
        return (await self.answer(request, inputs)).plan

    async def answer(self, request: str, inputs: dict[str, Any]) -> Answer:
        """The plan with who made it, in how many attempts, for how many tokens."""
        if not request or not request.strip():
            raise PlanningError("the request is empty: say in words what should be done")
        model = self.client.model
        remembered = self.memory.recall_valid(request, self.catalogue, inputs)
        if remembered is not None:
            return Answer(remembered, self.name, model, remembered=True)
        prompt = self.prompt(request, inputs)
        spent: list[Completion] = []
        problems: list[str] = []
        for attempt in range(1, self.max_repairs + 2):
            data, problems = await self._attempt(prompt, inputs, spent)
            if (asked := question_of(data)) is not None:
                self._count(attempt, spent, outcome="asked")
                raise asked
            if not problems:
                self._count(attempt, spent, outcome="plans")
                return Answer.spent(data, self.name, model, attempt, spent)
            prompt = repair_prompt(prompt, data, problems)
        self._count(self.max_repairs + 1, spent, outcome="failed")
        gave_up = f"{self._who()} gave no valid plan in {self.max_repairs + 1} attempts: "
        raise PlanRefused(
            [], [gave_up + "; ".join(problems)], ASKING, [request.strip()], problems=problems
        )

    def prompt(self, request: str, inputs: dict[str, Any]) -> str:
        """The first prompt: request, inputs, catalogue and plan format."""
        names = ", ".join(sorted(inputs)) or "none"
        return (
            f"Request: {request.strip()}\n\nExecution inputs (use as ${{input.<name>}}): {names}\n\n"
            f"Tool catalogue:\n{catalogue_text(self.catalogue)}\n\n{PLAN_FORMAT}"
        )

    async def _attempt(
        self, prompt: str, inputs: dict[str, Any], spent: list[Completion]
    ) -> tuple[Any, list[str]]:
        """One answer and its problems (none when it is a valid plan)."""
        label = self._label()
        try:
            done = await self.client.complete(
                prompt, system=SYSTEM, schema=plan_schema(self.catalogue.names())
            )
        except ModelUnavailable as exc:
            raise PlanningError(f"{label} cannot be reached: {exc}", transient=True) from None
        except ModelError as exc:
            raise PlanningError(f"{label} could not plan: {exc}", transient=exc.retryable) from None
        spent.append(done)
        try:
            data = done.json()
        except ModelInvalidJson as exc:
            return exc.text, [f"the answer was not JSON: {exc.text[:200]!r}"]
        if not isinstance(data, dict):
            return data, ["the answer must be one JSON object with a 'steps' list"]
        data = _drop_nulls(data)
        try:
            validate_plan(data, self.catalogue, inputs)
        except PlanInvalid as exc:
            return data, [str(p) for p in exc.problems]
        return data, []

    def _count(self, attempts: int, spent: list[Completion], *, outcome: str) -> None:
        self.tally[outcome] += 1
        self.tally["repaired"] += outcome == "plans" and attempts > 1
        self.tally["attempts"] += attempts
        self.tally["input_tokens"] += sum(c.input_tokens for c in spent)
        self.tally["output_tokens"] += sum(c.output_tokens for c in spent)

    def _label(self) -> str:
        label = self.client.label
        return label[:1].upper() + label[1:]

    def _who(self) -> str:
        return f"{self._label()} ({self.client.model})"

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


def question_of(data: Any) -> PlanRefused | None:
    """The model's question instead of a plan (the schema's alternative), as a refusal that
    the planner service asks the person; None when the answer is a plan (or an attempt at one)."""
    if not isinstance(data, dict) or data.get("steps") or not data.get("question"):
        return None
    asked = data["question"]
    if isinstance(asked, str):
        asked = {"question": asked}
    if not isinstance(asked, dict) or not str(asked.get("question") or "").strip():
        return None
    text = str(asked["question"]).strip()
    choices = [str(c) for c in _texts(asked.get("choices")) if str(c) not in text]
    if choices:
        text += " (for example: " + "; ".join(choices) + ")"
    missing = _texts(asked.get("missing")) or [text]
    return PlanRefused(_texts(asked.get("understood")), missing, ASKING, question=text)


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value if str(v).strip()] if isinstance(value, list) else []


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
