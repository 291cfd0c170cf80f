"""Filling a tool's input from a task's words and the outputs routed to it.

Which filler runs is decided by the tool's schema (a URL field, a file field, a template, a JSON
query, a wait, a prompt), not its name, so a plugin tool of the same shape is filled the same way;
any other tool gets its text field and typed defaults for its required fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baton_common.catalogue import ToolSpec

from baton_planner.offline import words as w
from baton_planner.offline.matching import (
    constrained_values,
    content_field,
    file_field,
    is_query,
    is_template,
    is_wait,
    props,
    url_field,
    url_input,
)

Source = tuple[str, ToolSpec]  # a step id and its tool

_DAY = re.compile(
    r"\b(today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I
)
_ISO = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?)?")
_IDENT = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{4,}\b")


class MissingInput(Exception):
    """The task's words do not give a value the tool requires: better to ask than to guess."""

    def __init__(self, tool: str, fields: list[str]) -> None:
        super().__init__(f"{tool} needs {', '.join(fields)}")
        self.tool, self.fields = tool, fields


@dataclass
class Need:
    """What one step is given: its words, its enumeration item, the outputs it reads."""

    text: str
    item: str | None = None
    sources: list[Source] = field(default_factory=list)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None  # the file the step reads or writes, when the plan decided it
    url: str | None = None


def ref(step_id: str, spec: ToolSpec | None) -> str:
    """``${steps.<id>.output.<primary>}`` (the whole output if the tool names no primary)."""
    primary = spec.primary_output if spec else None
    return f"${{steps.{step_id}.output.{primary}}}" if primary else f"${{steps.{step_id}.output}}"


def text_ref(step_id: str, spec: ToolSpec) -> str:
    """The output as text: the primary output if it is a string, else a ``text`` field (a fetched
    page's body), else the primary output."""
    if _output_type(step_id, spec) != "string" and "text" in spec.output_schema.get(
        "properties", {}
    ):
        return f"${{steps.{step_id}.output.text}}"
    return ref(step_id, spec)


def _is_text(source: Source) -> bool:
    return text_ref(*source).endswith(".text}") or _output_type(*source) == "string"


def text_of(sources: list[Source]) -> str:
    """Text made of the sources' outputs: one text as is, texts one after the other, else
    labelled sections (a labelled section keeps a non-text output readable)."""
    if len(sources) == 1 and _is_text(sources[0]):
        return text_ref(*sources[0])
    if all(_is_text(s) for s in sources):
        return "\n\n".join(text_ref(sid, spec) for sid, spec in sources)
    if len(sources) == 1:  # inside a longer string a value is written as text
        return f"{ref(*sources[0])}\n"
    return "\n\n".join(f"{sid}:\n{ref(sid, spec)}" for sid, spec in sources)


def _output_type(step_id: str, spec: ToolSpec) -> str | None:
    out = spec.output_schema.get("properties", {})
    return out.get(spec.primary_output or "", {}).get("type")


def fill(tool: ToolSpec, need: Need) -> dict[str, Any]:
    """The step's input, keeping only the fields the tool's schema knows."""
    value = _filler(tool)(tool, need)
    known = props(tool)
    return {k: v for k, v in value.items() if k in known or not known}


def _filler(tool: ToolSpec) -> Callable[[ToolSpec, Need], dict[str, Any]]:
    if url_field(tool):
        return _fill_http
    if is_wait(tool):
        return _fill_wait
    if is_query(tool):
        return _fill_query
    if is_template(tool):
        return _fill_template
    if file_field(tool) and content_field(tool):
        return _fill_write
    if file_field(tool):
        return _fill_path
    if "prompt" in props(tool):
        return _fill_prompt
    return _fill_generic


# An HTTP method named in the words: "send a DELETE to https://…", "do a PUT on …", "a patch
# request to …"
_METHOD = re.compile(
    r"\b(GET|POST|PUT|PATCH|DELETE|HEAD)\b|\b(get|post|put|patch|delete|head)\s+request\b"
)
_BODILESS = frozenset({"GET", "DELETE", "HEAD"})


def _named_method(tool: ToolSpec, text: str) -> str | None:
    """The HTTP method the words name, when the tool's schema allows it."""
    found = _METHOD.search(w.QUOTED.sub(" ", w.URL.sub(" ", text)))
    if found is None:
        return None
    method = (found[1] or found[2]).upper()
    allowed = props(tool).get("method", {}).get("enum")
    return method if not allowed or method in allowed else None


def _fill_http(tool: ToolSpec, need: Need) -> dict[str, Any]:
    found = w.urls(need.item or "") or w.urls(need.text)
    name = url_input(need.inputs)
    url = need.url or (found[0] if found else f"${{input.{name}}}" if name else None)
    value: dict[str, Any] = {url_field(tool) or "url": url or "https://example.com"}
    send = w.sends(need.text) or bool(need.sources)
    if "method" in props(tool):
        value["method"] = "POST" if send and need.url is None else "GET"
        named = _named_method(tool, need.text)
        if named is not None:
            value["method"] = named
            send = send and named not in _BODILESS
    if send and need.url is None and "json" in props(tool):
        quoted = w.quoted(need.text)
        filled = [(sid, spec) for sid, spec in need.sources if is_template(spec)]
        value["json"] = (
            {"message": ref(*filled[0])}  # "post 'build {n} done' … with n=4": the filled text
            if filled
            else {"message": quoted[0]}  # "post 'shop down' to …": the quoted words
            if quoted and w.sends(need.text)
            else {sid: ref(sid, spec) for sid, spec in need.sources}
            if need.sources
            else {"message": quoted[0] if quoted else need.text}
        )
    return value


def _fill_wait(tool: ToolSpec, need: Need) -> dict[str, Any]:
    if not w.DURATION.search(w.digits(w.without_entities(need.text))):
        raise MissingInput(tool.name, ["a duration (such as '10 minutes')"])
    seconds = w.seconds(need.text)
    longest = props(tool).get("seconds", {}).get("maximum")
    if longest is not None and seconds > longest:  # never a shorter wait than asked: ask
        raise MissingInput(
            tool.name, [f"a wait of at most {longest} s (a later start is a schedule)"]
        )
    return {"seconds": seconds}


def _fill_write(tool: ToolSpec, need: Need) -> dict[str, Any]:
    quoted = w.quoted(need.text)
    content = text_of(need.sources) if need.sources else quoted[0] if quoted else need.text
    value: dict[str, Any] = {
        file_field(tool) or "path": need.path or _file_name(need.text, "output.txt"),
        content_field(tool) or "content": content,
    }
    for name, schema in props(tool).items():
        # A boolean option the task names ("append …") is switched on.
        if schema.get("type") == "boolean" and re.search(rf"\b{name}", need.text, re.I):
            value[name] = True
    return value


def _fill_path(tool: ToolSpec, need: Need) -> dict[str, Any]:
    """The file a read or a delete works on: named, never guessed (deleting a default file
    would be a silently wrong plan)."""
    path = need.path or need.item or _file_name(need.text, "")
    if not path:
        raise MissingInput(tool.name, ["a file name (such as notes.md)"])
    return {file_field(tool) or "path": path}


def _fill_prompt(tool: ToolSpec, need: Need) -> dict[str, Any]:
    prompt = w.sentence_case(need.text)
    value: dict[str, Any] = {"prompt": prompt}
    if need.sources:
        value["prompt"] = f"{prompt}. The context holds the results of the earlier steps."
        value["context"] = [text_ref(sid, spec) for sid, spec in need.sources]
    elif need.inputs:
        named = _mentioned(need.text, need.inputs) or sorted(need.inputs)
        value["context"] = {k: f"${{input.{k}}}" for k in sorted(named)}
    return value


def _fill_template(tool: ToolSpec, need: Need) -> dict[str, Any]:
    quoted = [q for q in w.quoted(need.text) if "{" in q] or w.quoted(need.text)
    template = quoted[0] if quoted else None
    names = w.PLACEHOLDER_NAME.findall(template or "")
    given = w.pairs(need.text)
    values: dict[str, Any] = {}
    for name in names:
        if name in given:
            values[name] = given[name]
        elif name in need.inputs:
            values[name] = f"${{input.{name}}}"
        elif need.sources:
            values[name] = text_of(need.sources)
    if template is None:
        template = need.text.replace("{", "(").replace("}", ")")
        if need.sources:
            template += "\n\n" + "\n\n".join(f"{{{sid}}}" for sid, _ in need.sources)
            values = {sid: ref(sid, spec) for sid, spec in need.sources}
    return {"template": template, "values": values} if values else {"template": template}


def _fill_query(tool: ToolSpec, need: Need) -> dict[str, Any]:
    if need.sources:
        data: Any = (
            ref(*need.sources[0])
            if len(need.sources) == 1
            else [ref(s, spec) for s, spec in need.sources]
        )
    else:
        data = {k: f"${{input.{k}}}" for k in sorted(need.inputs)}
    named = w.json_path(need.text) or next(iter(w.named_fields(need.text)), None)
    return {"data": data, "path": named or _last_word(need.text)}


def _fill_generic(tool: ToolSpec, need: Need) -> dict[str, Any]:
    """Any other tool: the text field gets the task, other required fields a typed default."""
    known = props(tool)
    # a constrained field takes the word that fits it (the item's first: "for MSFT, GOOG …")
    value: dict[str, Any] = {
        **constrained_values(known, cased_names(tool, need.text)),
        **constrained_values(known, cased_names(tool, need.item or "")),
    }
    if tool.text_field and tool.text_field in known and tool.text_field not in value:
        quoted = w.quoted(need.text)
        if "pattern" in known[tool.text_field]:
            pass  # a constrained field takes only a word that fits it (above), never the task
        elif (called := _CALLED.search(need.text)) is not None:
            value[tool.text_field] = next(g for g in called.groups() if g)  # "called 'Q3 OKRs'"
        elif quoted and (need.sources or w.sends(need.text)):
            value[tool.text_field] = quoted[0]  # "post 'hello' to #general": the quoted text
        elif need.sources and w.sends(need.text):
            value[tool.text_field] = text_of(need.sources)  # "post it to #sales": what came before
        elif _names_a_thing(tool.text_field):
            # an enumeration's item is the name ("for lima, quito and bogota please")
            item = need.item and (_entity(tool, need.item) or need.item)
            found = item or _entity(tool, need.text)
            if found is None:
                raise MissingInput(tool.name, [tool.text_field])
            value[tool.text_field] = found  # "weather in oslo?": the city is "oslo"
        elif (
            tool.side_effect != "read"
            and not need.sources
            and not quoted
            and _entity(tool, need.text) is None
        ):
            # "open a ticket", "post a message": the words name only the tool, not what to write
            # (a tool that only reads takes the request as its task: "identify the worker")
            raise MissingInput(tool.name, [tool.text_field])
        else:
            value[tool.text_field] = need.text
    counted = w.counted(need.text)  # "the last five commits" → "the last 5 commits"
    numbers = re.findall(r"\b\d+(?:\.\d+)?\b", w.URL.sub(" ", counted))
    for name, schema in known.items():
        if schema.get("type") not in ("number", "integer") or not numbers:
            continue
        found = _number_for(name, counted, numbers)
        if found is not None:
            value[name] = float(found) if schema["type"] == "number" else int(float(found))
    value.update(_named_values(known, need.text))
    # An input of the same name as a field fills it ("pass them as inputs").
    value.update({k: f"${{input.{k}}}" for k in known if k in need.inputs and k not in value})
    missing = []
    for name in tool.input_schema.get("required", []):
        if name not in value:
            found = _default_for(known.get(name, {}), need)
            if found is None:
                missing.append(name)
            value[name] = found
    if missing:
        raise MissingInput(tool.name, missing)
    return value


# Number fields that say how many of a list to give ("the 5 latest commits", "top 3").
_HOW_MANY = frozenset("limit max max_results count n number top size amount".split())


def _number_for(name: str, text: str, numbers: list[str]) -> str | None:
    """The number a numeric field takes: the one before the field's own name or its unit ("the
    next 3 days" for ``days``), or for a field of how many ("limit", "count") the one number
    the task gives."""
    unit = name.lower().rstrip("s")
    # "the next 3 days", "a 3-day outlook"
    before = re.search(rf"\b(\d+(?:\.\d+)?)[\s-]+(?:[a-z]+\s+)?{re.escape(unit)}s?\b", text, re.I)
    if before is not None and not w.URL.search(before[0]):
        return before[1]
    if name.lower() in _HOW_MANY and len(set(numbers)) == 1:
        return numbers[0]
    return None


def _named_values(known: dict[str, Any], text: str) -> dict[str, Any]:
    """Values a field's name calls for: a day for a window, an ISO time, an identifier."""
    value: dict[str, Any] = {}
    times = _ISO.findall(text)
    day = _DAY.search(text)
    plain = _ISO.sub(" ", w.URL.sub(" ", text))
    emails = w.EMAIL.findall(plain)
    for name in known:
        if name.startswith("window_"):
            value[name] = day[1].lower() if day else "today"
        elif name == "start" and times:
            value[name] = times[0]
        elif name == "end" and len(times) > 1:
            value[name] = times[1]
        elif (name in ("uid", "id") or name.endswith("_id")) and _IDENT.search(plain):
            value[name] = _IDENT.search(plain)[0]  # type: ignore[index]
        elif name in ("attendees", "emails", "to", "recipients") and emails:
            value[name] = emails if known[name].get("type") == "array" else emails[0]
        elif name in ("from", "to", "agent") and (after := _word_after(name, plain)):
            value[name] = after
    return value


def _word_after(name: str, text: str) -> str | None:
    """The name after a preposition a field is named by ("from alice to bob"), or after the
    field's own name ("for agent bob")."""
    found = re.search(rf"\b{name}\s+(?:the\s+)?(?:agent\s+)?([A-Za-z_][\w.-]*)", text, re.I)
    return found[1] if found and found[1].lower() not in w.STOP else None


def _default_for(schema: dict[str, Any], need: Need) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "string":
        # Only the text field takes the task's words; another text is not guessed.
        return text_of(need.sources) if need.sources else None
    defaults: dict[str, Any] = {
        "number": schema.get("minimum", 0),
        "integer": schema.get("minimum", 0),
        "boolean": False,
        "array": [],
        "object": {},
    }
    if kind in defaults:
        return defaults[kind]
    return [ref(s, spec) for s, spec in need.sources] if need.sources else need.text


def _file_name(text: str, default: str) -> str:
    found = w.files(text)
    return w.destination(text) or (found[-1] if found else default)


def _last_word(text: str) -> str:
    found = [
        x for x in w.WORD.findall(text) if x.lower() not in w.STOP and x.lower() not in w.VERBS
    ]
    return found[-1] if found else "result"


def _mentioned(text: str, inputs: Mapping[str, Any]) -> list[str]:
    found = set(w.WORD.findall(text.lower()))
    return [k for k in inputs if k.lower() in found]


# Text fields that take words to say (a prompt, a title, a search): the task's words fit them.
# Any other text field names a thing (a city, a customer, a repository): it takes that name.
_FREE_TEXT = frozenset(
    "text message content body prompt query q search description title summary note comment "
    "subject question task instructions input details reason topic request".split()
)
_TIME_WORDS = frozenset(
    "today tomorrow tonight yesterday now rn right soon asap morning afternoon evening night week "
    "weekend month "
    "year next last this coming few days day hours hour minutes latest current currently "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)
_AFTER_PREP = re.compile(
    r"\b(?:in|for|at|of|near|about|on|around)\s+(?:the\s+|a\s+|an\s+)?"
    r"(?P<name>[^\W_][\w.'&-]*(?:\s+[^\W_][\w.'&-]*){0,2})",
    re.I,
)
_NAME_WORD = re.compile(r"[^\W_][\w.&-]*[^\W_]|[^\W_]")


# The name a task gives the thing it makes: "a page called 'Q3 OKRs'", "titled \"Rota\"".
_CALLED = re.compile(
    r"\b(?:called|named|titled|entitled)\s+(?:'([^']+)'|\"([^\"]+)\"|“([^”]+)”)", re.I
)


def _names_a_thing(field_name: str) -> bool:
    return field_name.lower() not in _FREE_TEXT


def _tool_stems(tool: ToolSpec) -> set[str]:
    """The stems of what the tool is (its name, description, keywords and their synonyms)."""
    text = " ".join(
        [tool.name.replace(".", " ").replace("_", " "), tool.description, *tool.keywords]
    )
    found = set(w.stems(text))
    for group in w.SYNONYMS:
        if found & {w.stem(g) for g in group}:
            found |= {w.stem(g) for g in group}
    return found


def cased_names(tool: ToolSpec, text: str) -> str:
    """The text with the names a person typed in lower case upper-cased where only that case
    fits one of the tool's constrained fields ("share price of ibm and orcl" for a ticker
    ``^[A-Z.]{1,6}$``): words that are not the tool's own words, time words, verbs or stop
    words. Unchanged when no field needs it."""
    patterns = []
    for name, schema in props(tool).items():
        pattern = schema.get("pattern") if isinstance(schema, dict) else None
        if pattern and "http" not in pattern and name not in ("url", "uri", "endpoint"):
            patterns.append(pattern.strip("^$"))
    if not patterns or constrained_values(props(tool), text):
        return text  # none to fit, or names typed in the case that fits: kept as typed
    own = _tool_stems(tool)

    def upper(found: re.Match[str]) -> str:
        word = found.group(0)
        low, stem = word.lower(), w.stem(word.lower())
        plain = low in w.STOP or low in _TIME_WORDS or low in w.VERBS or low in _CASUAL_WORDS
        plain = plain or (low.endswith("ing") and len(low) > 4)  # "how are the shares doing"
        if plain or any(stem.startswith(o) or o.startswith(stem) for o in own if len(o) > 2):
            return word
        for pattern in patterns:
            try:
                if not re.fullmatch(pattern, word) and re.fullmatch(pattern, word.upper()):
                    return word.upper()
            except re.error:
                return word
        return word

    # quoted text and URLs are kept as written
    parts = re.split(r"(https?://\S+|'[^']*'|\"[^\"]*\")", text)
    return "".join(p if i % 2 else _LOWER_WORD.sub(upper, p) for i, p in enumerate(parts))


_LOWER_WORD = re.compile(r"(?<![\w#@./-])[a-z]{2,6}(?![\w@/-])")


# Words of a chatty request that are no names ("right now", "pls"): never upper-cased.
_CASUAL_WORDS = frozenset("now right today yet ok okay pls plz thanks thx hey hi btw asap".split())


# Words of a question that are no name ("what's the weather like", "how is it out there").
_NO_NAMES = frozenset("like out outside there currently going looking".split())


def _entity(tool: ToolSpec, text: str) -> str | None:
    """The name a task gives for a thing (the city of "will I need an umbrella in dublin
    tomorrow?", the customer of "look up acme in the crm"): the words after a preposition, else
    the words left, that are neither the tool's own words, time words, verbs nor stop words."""
    own = _tool_stems(tool)
    plain = w.QUOTED.sub(" ", w.URL.sub(" ", text))
    addresses = w.EMAIL.findall(plain)
    if addresses:
        return str(addresses[0])  # "look up jane@acme.example in the crm": the address names her

    def naming(words: list[str]) -> list[str]:
        kept: list[str] = []
        for word in words:
            low = word.lower().strip(".'")
            stem = w.stem(low)
            if (
                len(low) < 2  # the s of "what's"
                or low in w.STOP
                or low in _TIME_WORDS
                or low in _NO_NAMES
                or low in w.VERBS
                or low.isdigit()
                or any(stem.startswith(o) or o.startswith(stem) for o in own if len(o) > 2)
            ):
                if kept:
                    break  # the name ends where other words start
                continue
            kept.append(word.strip(".'"))
        return kept

    for found in _AFTER_PREP.finditer(plain):
        name = naming(_NAME_WORD.findall(found["name"]))
        if name:
            return " ".join(name)
    rest = naming(_NAME_WORD.findall(plain))
    return " ".join(rest[:3]) if rest else None
