"""Secret tool inputs: values a tool's input schema marks ``format: password`` or ``writeOnly``.

They are sealed (``sealing.Sealer``, a data key each) where a plan first becomes an event: the
gateway's intake, which knows the catalogue's schemas, before it records the request. That covers
a literal value in such a field and an execution ``input`` the field takes by reference
(``${input.token}``): the input is sealed in the request's ``inputs``, so the executor copies only
the sealed text into the step's input when it resolves the reference. A worker opens them right
before the tool call (``open_sealed``) and scrubs the clear values from what the tool returns,
raises or logs (``scrub``). Everything people read shows ``***`` (``sealing.redact``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from baton_common.catalogue import Catalogue
from baton_common.jsonvalues import map_strings
from baton_common.plans import REF
from baton_common.sealing import PREFIX, REDACTED, SEALED_TEXT, is_sealed

Path = tuple[str, ...]


def secret_paths(schema: Mapping[str, Any], at: Path = ()) -> list[Path]:
    """Where an input schema marks a field secret (nested objects included)."""
    found: list[Path] = []
    for name, field in (schema.get("properties") or {}).items():
        if not isinstance(field, Mapping):
            continue
        if field.get("format") == "password" or field.get("writeOnly") is True:
            found.append((*at, name))
        elif field.get("type") == "object" or "properties" in field:
            found += secret_paths(field, (*at, name))
    return found


def _calls(plan: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(tool, input) of every call a plan can make: steps, alternatives, compensations. The
    plan may not be checked yet (a webhook endpoint's action is sealed before the webhook
    service checks it): what is not shaped as a call is passed over, for the check to refuse."""
    steps = plan.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        alternatives = step.get("alternatives")
        calls = [step, *(alternatives if isinstance(alternatives, list) else [])]
        calls.append(step.get("compensate"))
        for call in calls:
            if (
                isinstance(call, Mapping)
                and isinstance(call.get("tool"), str)
                and isinstance(call.get("input"), dict)
            ):
                yield call["tool"], call["input"]


def _secret_calls(
    plan: Mapping[str, Any], catalogue: Catalogue
) -> list[tuple[dict[str, Any], list[Path]]]:
    found = []
    for tool, call_input in _calls(plan):
        spec = catalogue.get(tool)
        if spec is not None and (paths := secret_paths(spec.input_schema)):
            found.append((call_input, paths))
    return found


def has_secrets(data: Mapping[str, Any], catalogue: Catalogue) -> bool:
    """Whether a request's plan calls a tool with secret fields (then ``seal_request`` it, off
    the event loop: each secret's data key is stored)."""
    plan = data.get("plan")
    return isinstance(plan, Mapping) and bool(_secret_calls(plan, catalogue))


def seal_request(
    data: dict[str, Any], catalogue: Catalogue, seal: Callable[[str], str]
) -> dict[str, Any]:
    """An execution request (``plan``, ``inputs``) with its secret values sealed, in place:
    literals in secret fields, and the ``inputs`` those fields reference."""
    plan, inputs = data.get("plan"), data.get("inputs")
    if not isinstance(plan, Mapping):
        return data
    referenced: set[str] = set()
    for call_input, paths in _secret_calls(plan, catalogue):
        for path in paths:
            referenced |= _seal_at(call_input, path, seal)
    seal_inputs(inputs, referenced, seal)
    return data


def secret_input_names(plan: Mapping[str, Any], catalogue: Catalogue) -> set[str]:
    """The ``inputs`` names a plan's secret fields reference (``${input.token}``): what a run of
    it by name (``plan_ref``) must seal in its inputs before they become an event."""
    names: set[str] = set()
    for call_input, paths in _secret_calls(plan, catalogue):
        for path in paths:
            value: Any = call_input
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str):
                names |= _input_refs(value)
    return names


def seal_inputs(inputs: Any, names: Iterable[str], seal: Callable[[str], str]) -> None:
    """Seal, in place, the ``inputs`` values at these names (``a`` or ``a.b``)."""
    if isinstance(inputs, dict):
        for name in sorted(names):
            _seal_input(inputs, name.split("."), seal)


def _input_refs(value: str) -> set[str]:
    refs = (r.strip() for r in REF.findall(value))
    return {r[len("input.") :] for r in refs if r.startswith("input.")}


def _seal_at(call_input: dict[str, Any], path: Path, seal: Callable[[str], str]) -> set[str]:
    """Seal the literal at ``path``; the ``input.…`` names it references, to seal there."""
    parent: Any = call_input
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    value = parent.get(path[-1]) if isinstance(parent, dict) else None
    if not isinstance(value, str) or is_sealed(value):
        return set()
    refs = REF.findall(value)
    if not refs:
        parent[path[-1]] = seal(value)
        return set()
    return _input_refs(value)


def _seal_input(inputs: dict[str, Any], keys: list[str], seal: Callable[[str], str]) -> None:
    parent: Any = inputs
    for key in keys[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    value = parent.get(keys[-1]) if isinstance(parent, dict) else None
    # an input that is itself a reference (a schedule's ${schedule.…}, a trigger's ${event.…})
    # is filled in later, by the service that starts the execution: not a secret here
    if isinstance(value, str) and not is_sealed(value) and not REF.search(value):
        parent[keys[-1]] = seal(value)


def open_sealed(value: Any, unseal: Callable[[str], str]) -> tuple[Any, list[str]]:
    """``value`` with every sealed string opened (whole, or inside a longer string), and the
    clear secrets found, to scrub from what the tool gives back."""
    opened: dict[str, str] = {}

    def one(match: re.Match[str]) -> str:
        sealed = match.group(0)
        if sealed not in opened:
            opened[sealed] = unseal(sealed)
        return opened[sealed]

    clear = map_strings(value, lambda v: SEALED_TEXT.sub(one, v) if PREFIX in v else v)
    return clear, sorted({s for s in opened.values() if s}, key=len, reverse=True)


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with every clear secret in its strings shown as ``***`` (a tool that echoes
    its input, an error that quotes it)."""
    if not secrets:
        return value

    def scrubbed(text: str) -> str:
        for secret in secrets:  # longest first: a secret inside another is replaced after it
            text = text.replace(secret, REDACTED)
        return text

    return map_strings(value, scrubbed)


def keep_sealed(edited: Any, original: Any) -> Any:
    """An input a person edited at an approval gate: where they left a secret as it was shown
    (``***``), the original sealed value stays."""
    if edited == REDACTED and is_sealed(original):
        return original
    if isinstance(edited, dict) and isinstance(original, dict):
        return {k: keep_sealed(v, original.get(k)) for k, v in edited.items()}
    if isinstance(edited, list) and isinstance(original, list):
        return [keep_sealed(v, o) for v, o in zip(edited, original, strict=False)] + edited[
            len(original) :
        ]
    return edited
