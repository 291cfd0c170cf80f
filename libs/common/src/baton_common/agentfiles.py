"""Agent files: tools declared in YAML, in the agents folder (``BATON_AGENTS_DIR``, ``./agents``).

A user adds a tool without touching Baton's code: one file names it, describes it, gives its
input and output JSON schemas, its side-effect class, an optional rate limit and how it runs
(an HTTP endpoint, a Python callable, or an LLM prompt). A file that does not read or does not
fit is reported with its path and reason and skipped; it never stops the others loading.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from baton_common.catalogue import ToolSpec
from baton_common.rates import Rate

AGENT_SUFFIXES = (".yaml", ".yml")
# libyaml's safe loader when PyYAML was built with it (about 10 times faster), else the pure one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NAME = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$"


def agents_dir() -> Path:
    """Where agent files live: ``$BATON_AGENTS_DIR``, else ``./agents``."""
    return Path(os.environ.get("BATON_AGENTS_DIR") or "agents")


class HttpImpl(BaseModel):
    """The step's input is sent as JSON; the JSON answer is the output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class LlmImpl(BaseModel):
    """A prompt template filled from the input (``{field}``), answered by the configured model."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: str = Field(min_length=1)
    model: str | None = None


class Implementation(BaseModel):
    """Exactly one of ``http``, ``python`` (``package.module:function``) or ``llm``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    http: HttpImpl | None = None
    python: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    llm: LlmImpl | None = None

    @model_validator(mode="after")
    def _one(self) -> Implementation:
        given = [k for k in ("http", "python", "llm") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of http, python or llm (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http else "python" if self.python else "llm"


class AgentFile(BaseModel):
    """One agent file, as written (these names are the file format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME, max_length=100)
    description: str = Field(min_length=1, max_length=2000)
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] = Field(default_factory=dict)
    side_effect: Literal["read", "write", "critical"] = "read"
    rate_limit: str | None = None
    keywords: list[str] = Field(default_factory=list)
    # As built-in tools declare them (catalogue.ToolSpec): what a dry run answers instead of the
    # call (``${input.…}`` filled in), whether a read runs for real in one, and how long a read's
    # result may be reused for the same input (the smart cache).
    dry_run: Literal["real", "simulate"] | None = None
    dry_run_output: Any = None
    cache_ttl_s: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    implementation: Implementation

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a JSON schema: {exc.message}") from None
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            Rate.parse(value)
        return value

    @model_validator(mode="after")
    def _reads_only(self) -> AgentFile:
        """What only a read can have: a write's result is never reused, nor called in a dry run."""
        if self.side_effect != "read" and self.cache_ttl_s is not None:
            raise ValueError(
                f"cache_ttl_s: only a read tool's results are cached (side_effect is "
                f"{self.side_effect})"
            )
        if self.side_effect != "read" and self.dry_run == "real":
            raise ValueError(
                f"dry_run: a {self.side_effect} tool is always simulated in a dry run, never called"
            )
        return self

    def spec(self) -> ToolSpec:
        text = _text_field(self.input_schema)
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            side_effect=self.side_effect,
            rate_limit=self.rate_limit,
            keywords=tuple(self.keywords),
            text_field=text,
            dry_run=self.dry_run,
            dry_run_output=self.dry_run_output,
            cache_ttl_s=self.cache_ttl_s,
        )


def _text_field(schema: dict[str, Any]) -> str | None:
    """The first required string field: where the offline planner puts a task's words."""
    props = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if isinstance(props.get(name), dict) and props[name].get("type") == "string":
            return str(name)
    return None


class AgentProblem(Exception):
    """An agent file that cannot be used; the message says why."""


def read_agent(path: Path) -> AgentFile:
    """Parse and check one file; ``AgentProblem`` with a readable reason otherwise."""
    try:
        data = yaml.load(path.read_text(), Loader=_LOADER)
    except OSError as exc:
        raise AgentProblem(f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise AgentProblem(f"invalid YAML: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise AgentProblem("an agent file is a mapping (name, description, input_schema, …)")
    try:
        return AgentFile.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        ]
        raise AgentProblem("; ".join(problems)) from None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def scan_agents(folder: Path) -> tuple[list[tuple[Path, AgentFile]], list[tuple[Path, str]]]:
    """Every agent file of ``folder`` (sorted by path): the good ones and the broken ones."""
    good: list[tuple[Path, AgentFile]] = []
    broken: list[tuple[Path, str]] = []
    if not folder.is_dir():
        return good, broken
    for path in sorted(p for p in folder.rglob("*") if p.suffix in AGENT_SUFFIXES):
        try:
            good.append((path, read_agent(path)))
        except AgentProblem as exc:
            broken.append((path, str(exc)))
    return good, broken
