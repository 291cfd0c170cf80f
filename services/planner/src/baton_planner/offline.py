"""The offline planner: deterministic plans from a request without any model.

The request is split into tasks (sentences, ";", "then", and "and"/commas that start a new verb
clause), each task is matched to the catalogue tool whose name, keywords and description share
the most (TF-IDF weighted, lightly stemmed) words with it, and the task's words fill the tool's
input. Enumerations ("for api, billing and search") fan out into parallel steps; a task that
consumes earlier results ("summarise them", "save the summary") depends on and references the
previous task's steps; independent tasks stay parallel. Same request and catalogue, same plan.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec, ToolStats
from baton_common.plans import Plan, PlanInvalid, validate_plan

from baton_planner.planners import PlanningError

# --- vocabulary ------------------------------------------------------------------------------------

# Verbs that start a clause even with nothing after them ("..., then summarise").
_STRONG_VERBS = frozenset(
    "summarise summarize analyse analyze compare combine merge translate classify explain describe "
    "save store persist export write read open load wait sleep pause fetch download upload collect "
    "gather send notify delete remove erase extract fill format render compose research find look "
    "get create generate recommend evaluate assess count print show tell ask retrieve scrape crawl "
    "pull grab convert transform calculate compute rank sort filter publish share archive copy "
    "append attach submit".split()
)
# Words that are verbs or nouns: they start a clause only when something follows them.
_WEAK_VERBS = frozenset(
    "search check report record request plan answer draft post put call list review monitor email "
    "message parse pick select note log make test verify validate update track watch query".split()
)
_VERBS = _STRONG_VERBS | _WEAK_VERBS
# A task led by one of these, or naming earlier results, consumes the previous task's output.
_CONSUMER_VERBS = frozenset(
    "summarise summarize combine merge compare save store persist export send report notify email "
    "publish share append archive attach".split()
)
# Tools whose main input is earlier data: after other tasks, they read them.
_CONSUMING_TOOLS = frozenset({"files.write", "json.query"})
_TEXT_TOOLS = frozenset({"llm.generate", "text.template"})
_SEND_VERBS = frozenset("send post notify publish submit share push upload".split())
_PRONOUNS = frozenset("them it its they those these this that both everything all together".split())
_EARLIER = re.compile(
    r"\b(?:the|those|these|that|this|all|both)\s+(?:results?|outputs?|summary|summaries|reports?|"
    r"data|findings|responses?|answers?|text|contents?|lists?|pages?|digest|analysis|collected)\b",
    re.I,
)
_NO_FAN_OUT = re.compile(r"\b(?:compare|comparison|combine|merge|between|versus|vs|both)\b", re.I)
_FILLERS = re.compile(
    r"^(?:(?:please|also|and|then|first|firstly|next|now|finally|kindly|afterwards|after\s+that|"
    r"(?:can|could|would)\s+you|i\s+(?:want|need)\s+you\s+to)\b[\s,]*)+",
    re.I,
)
_STOP = frozenset(
    "a an the and or of to for from in on at by with about into onto over as is are be it its "
    "them they those these this that then please me my our your their i we you all both each "
    "some any one up out so than via per".split()
)

# --- patterns --------------------------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s,;\"'<>)\]]+")
_FILE = re.compile(
    r"(?<![\w/.-])[\w\-]+(?:/[\w\-]+)*\.(?:md|txt|json|csv|tsv|html|yaml|yml|log|xml|pdf|py|js|ts"
    r"|ini|toml|out)\b",
    re.I,
)
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?\b", re.I
)
_WORD = re.compile(r"[A-Za-z0-9]+")
_ENUM_WORD = r"(?!(?:and|or|then)\b)[\w\-/:@#%+~]+(?:\.[\w\-/:@#%+~]+)*"
_ENUM_ITEM = rf"{_ENUM_WORD}(?:\s+{_ENUM_WORD}){{0,2}}"
_ENUM = re.compile(
    rf"(?:\b(?P<prep>for|about|on|from|in|across|covering|regarding|at|per|of)\s+|:\s+)"
    rf"(?P<items>{_ENUM_ITEM}(?:\s*,\s*{_ENUM_ITEM})*\s*,?\s+(?:and|or)\s+{_ENUM_ITEM})"
    r"(?=\s*(?:[,;!?]|\.(?:\s|$)|$)|\s+(?:and|then)\b)",
    re.I,
)
_ENUM_SPLIT = re.compile(r"\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\s*;\s*|\n+")
_ORDER = re.compile(
    r"(?:\s*,\s*|\s+)(?:and\s+)?(?:then|after\s+that|afterwards|finally)\b\s*,?\s*", re.I
)
_CLAUSE = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.I)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")


# --- splitting the request into tasks --------------------------------------------------------------


@dataclass
class Task:
    """One clause of the request: its text, whether it must run after the previous, its fan-out."""

    text: str
    ordered: bool = False
    items: list[str] = field(default_factory=list)
    enum_text: str = ""
    prep: str = ""


def split_tasks(request: str) -> list[Task]:
    """The request's clauses in order, enumerations kept whole inside their clause."""
    text, enums = _protect_enumerations(" ".join(request.split()))
    tasks: list[Task] = []
    for sentence in _SENTENCE.split(text):
        for i, part in enumerate(_ORDER.split(sentence)):
            lead_ordered = i > 0 or bool(
                re.match(r"^\s*(?:then|after\s+that|afterwards|finally)\b", part, re.I)
            )
            for j, clause in enumerate(_split_clauses(part)):
                task = _make_task(clause, enums, ordered=lead_ordered and j == 0)
                if task is not None:
                    tasks.append(task)
    return tasks


def _protect_enumerations(text: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
    """Replace each "for a, b and c" with a placeholder so clause splitting cannot break it."""
    enums: list[tuple[str, str, list[str]]] = []
    pos = 0
    while match := _ENUM.search(text, pos):
        items = [i.strip(" .") for i in _ENUM_SPLIT.split(match["items"]) if i.strip(" .")]
        if len(items) < 2 or any(_is_clause(i) for i in items):
            pos = match.start() + 1
            continue
        placeholder = f"\ue000{len(enums)}\ue001"
        enums.append((match.group(0), (match["prep"] or "").lower(), items))
        text = text[: match.start()] + placeholder + text[match.end() :]
        pos = match.start() + len(placeholder)
    return text, enums


def _is_clause(item: str) -> bool:
    """An "item" that starts with a verb and has an object, or names a pronoun, is a clause."""
    words = item.lower().split()
    if any(w in _PRONOUNS for w in words):
        return True
    return bool(words) and (
        words[0] in _STRONG_VERBS or (words[0] in _WEAK_VERBS and len(words) > 1)
    )


def _split_clauses(text: str) -> list[str]:
    """Split on "," / "and" only where a new verb clause begins (not inside a list of things)."""
    clauses: list[str] = []
    start = 0
    for boundary in _CLAUSE.finditer(text):
        left = text[start : boundary.start()]
        if len(left.split()) >= 2 and _starts_clause(text[boundary.end() :]):
            clauses.append(left)
            start = boundary.end()
    clauses.append(text[start:])
    return clauses


def _starts_clause(rest: str) -> bool:
    words = re.findall(r"[^\s,]+|,", rest.lower())
    if not words or words[0] not in _VERBS:
        return False
    return words[0] in _STRONG_VERBS or (len(words) > 1 and words[1] != ",")


def _make_task(clause: str, enums: list[tuple[str, str, list[str]]], ordered: bool) -> Task | None:
    clause = _FILLERS.sub("", clause.strip(" ,.;:!?")).strip(" ,.;:!?")
    if not _WORD.search(clause):
        return None
    task = Task(text=clause, ordered=ordered)
    for match in _PLACEHOLDER.finditer(clause):
        original, prep, items = enums[int(match[1])]
        if not task.items:
            task.items, task.enum_text, task.prep = items, original, prep
    task.text = _PLACEHOLDER.sub(lambda m: enums[int(m[1])][0], clause)
    return task


# --- matching tasks to tools -----------------------------------------------------------------------


def stem(word: str) -> str:
    """Light stemming: summary/summaries/summarise/summarize all become "summar"."""
    w = word.lower().replace("ize", "ise").replace("yze", "yse")
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    else:
        for suffix in ("ing", "ed", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith("ss"):
                w = w[: -len(suffix)]
                break
    return w.rstrip("e")[:6] or w[:6]


def _stems(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and not w.isdigit()]


class ToolIndex:
    """TF-IDF vectors of the catalogue's tools: keywords weigh 3, name parts 2, description 1."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.specs = catalogue.all()
        raw = [self._terms(spec) for spec in self.specs]
        df = Counter(t for terms in raw for t in terms)
        n = len(self.specs)
        self.vectors = [
            {t: w * (math.log((1 + n) / (1 + df[t])) + 1) for t, w in terms.items()}
            for terms in raw
        ]

    @staticmethod
    def _terms(spec: ToolSpec) -> Counter[str]:
        terms: Counter[str] = Counter()
        for s in _stems(spec.description):
            terms[s] = max(terms[s], 1)
        for s in _stems(spec.name.replace(".", " ").replace("_", " ")):
            terms[s] = max(terms[s], 2)
        for keyword in spec.keywords:
            for s in _stems(keyword):
                terms[s] = 3
        return terms

    def best(
        self,
        words: Counter[str],
        exclude: frozenset[str] = frozenset(),
        stats: Mapping[str, ToolStats] | None = None,
    ) -> ToolSpec | None:
        """The tool with the highest weighted overlap; among equal scores the higher success
        rate, then the lower p50 (``stats``), then the name; None if no overlap."""
        scored = [
            (round(sum(vec.get(t, 0.0) * c for t, c in sorted(words.items())), 9), spec)
            for spec, vec in zip(self.specs, self.vectors, strict=True)
            if spec.name not in exclude
        ]
        scored = [s for s in scored if s[0] > 0]
        if not scored:
            return None
        return max(scored, key=lambda s: (s[0], *stats_rank(s[1].name, stats)))[1]


def stats_rank(name: str, stats: Mapping[str, ToolStats] | None) -> tuple[Any, ...]:
    """A sort key (higher is better): success rate, then lower p50, then the name (stable)."""
    known = (stats or {}).get(name)
    rate = known.success_rate if known is not None else -1.0
    p50 = known.p50_ms if known is not None and known.p50_ms is not None else math.inf
    return (rate, -p50, [-ord(c) for c in name])


def _task_words(task: Task) -> Counter[str]:
    """The task's stems; its leading verb counts three times, URLs and file names as "url"/"file"."""
    text = _FILE.sub(" file ", _URL.sub(" url ", task.text))
    words = Counter(_stems(text))
    verb = _lead_verb(task.text)
    if verb:
        words[stem(verb)] += 2
    return words


def _lead_verb(text: str) -> str | None:
    first = _WORD.findall(text.lower())[:1]
    return first[0] if first and first[0] in _VERBS else None


# --- the planner -----------------------------------------------------------------------------------


class PlanMemory:
    """Plans that worked, by normalised request text (in memory, least recently used dropped)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._plans: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # The service feeds it from a worker thread while plans are made on the loop.
        self._lock = threading.Lock()

    @staticmethod
    def key(request: str) -> str:
        """Case, spacing and final punctuation do not make a request different."""
        return " ".join(request.lower().split()).strip(" .!?")

    def remember(self, request: str, plan: Mapping[str, Any] | Plan) -> None:
        """Keep ``plan`` as the answer to ``request``."""
        if isinstance(plan, Plan):
            plan = plan.model_dump(mode="json", exclude_defaults=True)
        key = self.key(request)
        if not key:
            return
        with self._lock:
            self._plans[key] = copy.deepcopy(dict(plan))
            self._plans.move_to_end(key)
            while len(self._plans) > self.max_entries:
                self._plans.popitem(last=False)

    def recall(self, request: str) -> dict[str, Any] | None:
        """A copy of the plan remembered for ``request``, if any."""
        key = self.key(request)
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                return None
            self._plans.move_to_end(key)
            return copy.deepcopy(plan)

    def recall_valid(
        self, request: str, catalogue: Catalogue, inputs: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The remembered plan if it still passes validation with this catalogue and inputs."""
        plan = self.recall(request)
        if plan is None:
            return None
        try:
            validate_plan(plan, catalogue, inputs)
        except PlanInvalid:
            return None  # the catalogue or inputs changed since it worked
        return plan

    def __len__(self) -> int:
        return len(self._plans)


@dataclass
class _Group:
    """The steps one task became."""

    task: Task
    tool: ToolSpec
    ids: list[str]
    consumer: bool

    @property
    def is_wait(self) -> bool:
        return self.tool.name == "time.sleep"


class OfflinePlanner:
    """Deterministic planning by splitting the request and matching tasks to tools."""

    name = "offline"

    def __init__(
        self,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        memory: PlanMemory | None = None,
        stats: Mapping[str, ToolStats] | None = None,
    ) -> None:
        if not catalogue.names():
            raise ValueError("the catalogue has no tools")
        self.catalogue = catalogue
        self.stats = stats  # tool name -> how it fared: breaks ties between equally fitting tools
        self.memory = memory if memory is not None else PlanMemory()
        self.index = ToolIndex(catalogue)

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Plan data for ``request`` that passes ``validate_plan``."""
        return self.plan_sync(request, inputs)

    def plan_sync(self, request: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """The same as ``plan``, without a loop (it never waits on anything)."""
        inputs = inputs or {}
        if not request or not request.strip():
            raise PlanningError("the request is empty: say in words what should be done")
        remembered = self.memory.recall_valid(request, self.catalogue, inputs)
        if remembered is not None:
            return remembered
        calendar = _calendar_plan(request, self.catalogue)
        if calendar is not None:
            return calendar
        tasks = split_tasks(request)
        if not tasks:
            raise PlanningError(
                f"no task found in the request {request!r}: start with a verb, e.g. 'fetch …'"
            )
        data = _Builder(self, inputs).build(request, tasks)
        try:
            validate_plan(data, self.catalogue, inputs)
        except PlanInvalid as exc:  # a bug here, but the caller deserves a clear message
            raise PlanningError(
                f"the offline planner made an invalid plan: {exc}",
                problems=[str(p) for p in exc.problems],
            ) from None
        return data

    def remember(self, request: str, plan: Mapping[str, Any] | Plan) -> None:
        """Learn a plan that worked: the same request gets it next time."""
        self.memory.remember(request, plan)

    def choose_tool(self, task: Task, inputs: Mapping[str, Any] | None = None) -> ToolSpec:
        """The tool for a task: explicit cues first (URL, wait), then word overlap."""
        names = self.catalogue
        verb = _lead_verb(task.text)
        if (
            _URL.search(task.text)
            and "http.request" in names
            and verb not in ("save", "store", "write")
        ):
            return names.get("http.request")  # type: ignore[return-value]
        if verb in ("wait", "sleep", "pause") and "time.sleep" in names:
            return names.get("time.sleep")  # type: ignore[return-value]
        # Without a URL an HTTP call cannot be made, whatever the words say ("get the price").
        exclude = set() if _url_input(inputs or {}) else {"http.request"}
        if verb == "write" and not _FILE.search(task.text) and "file" not in task.text.lower():
            # "write a report" asks for text, not a file.
            exclude |= {n for n in names.names() if n.startswith("files.")}
        found = self.index.best(_task_words(task), frozenset(exclude), self.stats)
        return found or self._default_tool()

    def _default_tool(self) -> ToolSpec:
        for name in ("llm.generate", "mock.agent"):
            if name in self.catalogue:
                return self.catalogue.get(name)  # type: ignore[return-value]
        return self.catalogue.all()[0]


class _Builder:
    """Builds one plan: step ids, dependencies, references and inputs."""

    def __init__(self, planner: OfflinePlanner, inputs: dict[str, Any]) -> None:
        self.planner = planner
        self.inputs = inputs
        self.groups: list[_Group] = []
        self.steps: list[dict[str, Any]] = []
        self.used_ids: set[str] = set()

    def build(self, request: str, tasks: list[Task]) -> dict[str, Any]:
        for task in tasks:
            self._add(task)
        return {
            "version": 1,
            "name": _clip(" ".join(request.split()), 80),
            "description": "Planned offline: tasks split from the request and matched to tools by words.",
            "steps": self.steps,
            "outputs": self._outputs(),
        }

    def _add(self, task: Task) -> None:
        tool = self.planner.choose_tool(task, self.inputs)
        sources = self._sources()
        own_source = tool.name in ("time.sleep", "files.read") or (
            bool(_URL.search(task.text)) and _lead_verb(task.text) not in _SEND_VERBS
        )
        # "..., then write a report" writes about what came before.
        reads = (
            _names_earlier(task)
            or tool.name in _CONSUMING_TOOLS
            or (task.ordered and tool.name in _TEXT_TOOLS)
        )
        consumer = bool(sources) and not own_source and reads
        order = self._order_deps(task, tool)
        if consumer:
            group = _Group(
                task, tool, [self._step(task, tool, task.text, None, sources, order)], True
            )
        else:
            group = _Group(task, tool, [], False)
            for text, item in self._fan_out(task, tool):
                group.ids.append(self._step(task, tool, text, item, [], order))
        self.groups.append(group)

    def _fan_out(self, task: Task, tool: ToolSpec) -> list[tuple[str, str | None]]:
        """One (text, item) per enumerated item or URL, or the task itself."""
        urls = _urls(task.text)
        if tool.name == "http.request" and len(urls) > 1:
            return [(task.text, u) for u in urls]
        if task.items and not _NO_FAN_OUT.search(task.text):
            return [(_with_item(task, item), item) for item in task.items]
        return [(task.text, None)]

    def _sources(self) -> list[str]:
        """Steps a consumer reads: the previous task's, or a run of independent tasks before it."""
        found: list[str] = []
        for group in reversed(self.groups):
            if group.is_wait:
                continue
            if group.consumer and found:
                break
            found = group.ids + found
            if group.consumer:
                break
        return found

    def _order_deps(self, task: Task, tool: ToolSpec) -> list[str]:
        """Run-order dependencies: after "then", around a wait."""
        if not self.groups:
            return []
        previous = self.groups[-1]
        if task.ordered or previous.is_wait or tool.name == "time.sleep":
            return list(previous.ids)
        return []

    def _step(
        self,
        task: Task,
        tool: ToolSpec,
        text: str,
        item: str | None,
        sources: list[str],
        order: list[str],
    ) -> str:
        step_id = self._new_id(task.text, tool, item)
        step: dict[str, Any] = {
            "id": step_id,
            "tool": tool.name,
            "input": _fill_input(
                tool, text, item, [(s, self._spec_of(s)) for s in sources], self.inputs
            ),
            "depends_on": list(dict.fromkeys(sources + order)),
            "description": text[:1].upper() + text[1:],
        }
        if tool.name == "time.sleep":
            # The default step timeout is 60 s; a longer wait must not time out.
            step["timeout"] = max(60.0, float(step["input"]["seconds"]) + 30)
        self.steps.append(step)
        return step_id

    def _spec_of(self, step_id: str) -> ToolSpec:
        tool = next(s["tool"] for s in self.steps if s["id"] == step_id)
        return self.planner.catalogue.get(tool)  # type: ignore[return-value]

    def _new_id(self, text: str, tool: ToolSpec, item: str | None) -> str:
        base = _step_id(text, tool, item)
        step_id, n = base, 2
        while step_id in self.used_ids:
            step_id, n = f"{base}_{n}", n + 1
        self.used_ids.add(step_id)
        return step_id

    def _outputs(self) -> dict[str, str]:
        """The primary output of every step nothing else reads (waits excluded), and every text
        the plan writes (a summary saved to a file is still what the person wants to read)."""
        needed = {d for s in self.steps for d in s["depends_on"]}
        outputs = {}
        for step in self.steps:
            spec = self.planner.catalogue.get(step["tool"])
            text = spec is not None and spec.primary_output == "text"
            if text or (step["id"] not in needed and step["tool"] != "time.sleep"):
                outputs[step["id"]] = _ref(step["id"], spec)
        return outputs


# --- filling inputs ---------------------------------------------------------------------------------


def _fill_input(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    filler = _FILLERS_BY_TOOL.get(tool.name, _fill_generic)
    value = filler(tool, text, item, sources, inputs)
    props = tool.input_schema.get("properties", {})
    return {k: v for k, v in value.items() if k in props or not props}


def _fill_http(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    urls = _urls(item or "") or _urls(text)
    url_input = _url_input(inputs)
    url = urls[0] if urls else f"${{input.{url_input}}}" if url_input else "https://example.com"
    value: dict[str, Any] = {"url": url, "method": "GET"}
    if _lead_verb(text) in _SEND_VERBS or sources:
        value["method"] = "POST"
        value["json"] = {sid: _ref(sid, spec) for sid, spec in sources} or {"message": text}
    return value


def _fill_sleep(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    return {"seconds": _seconds(text)}


def _fill_write(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    return {
        "path": _file_name(text, "output.txt"),
        "content": _text_of(sources) if sources else text,
    }


def _fill_path(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    default = "input.txt" if tool.name == "files.read" else "output.txt"
    return {"path": _file_name(text, default)}


def _fill_llm(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    prompt = text[:1].upper() + text[1:]
    value: dict[str, Any] = {"prompt": prompt}
    if sources:
        value["prompt"] = f"{prompt}. The context holds the results of the earlier steps."
        value["context"] = [_ref(sid, spec) for sid, spec in sources]
    elif inputs:
        value["context"] = {
            k: f"${{input.{k}}}" for k in sorted(_mentioned(text, inputs) or inputs)
        }
    return value


def _fill_template(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    template = text.replace("{", "(").replace("}", ")")
    if not sources:
        return {"template": template}
    placeholders = "\n\n".join(f"{{{sid}}}" for sid, _ in sources)
    return {
        "template": f"{template}\n\n{placeholders}",
        "values": {sid: _ref(sid, spec) for sid, spec in sources},
    }


def _fill_query(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    if sources:
        data: Any = (
            _ref(*sources[0]) if len(sources) == 1 else [_ref(s, spec) for s, spec in sources]
        )
    else:
        data = {k: f"${{input.{k}}}" for k in sorted(inputs)}
    return {"data": data, "path": _json_path(text)}


def _fill_agent(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    return {"task": text}


def _fill_generic(
    tool: ToolSpec,
    text: str,
    item: str | None,
    sources: list[tuple[str, ToolSpec]],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """Any other tool: the text field gets the task, other required fields a typed default."""
    props = tool.input_schema.get("properties", {})
    value: dict[str, Any] = {}
    if tool.text_field and tool.text_field in props:
        value[tool.text_field] = text
    for name in tool.input_schema.get("required", []):
        if name not in value:
            value[name] = _default_for(props.get(name, {}), text, sources)
    return value


def _default_for(schema: dict[str, Any], text: str, sources: list[tuple[str, ToolSpec]]) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "string":
        return _text_of(sources) if sources else text
    defaults: dict[str, Any] = {
        "number": schema.get("minimum", 0),
        "integer": schema.get("minimum", 0),
        "boolean": False,
        "array": [],
        "object": {},
    }
    if kind in defaults:
        return defaults[kind]
    return [_ref(s, spec) for s, spec in sources] if sources else text


_FILLERS_BY_TOOL = {
    "http.request": _fill_http,
    "time.sleep": _fill_sleep,
    "files.write": _fill_write,
    "files.read": _fill_path,
    "files.delete": _fill_path,
    "llm.generate": _fill_llm,
    "text.template": _fill_template,
    "json.query": _fill_query,
    "mock.agent": _fill_agent,
}


# --- calendar requests ------------------------------------------------------------------------------
# "find a 30 minute slot for ann and bob on thursday and book a review": a slot search, then the
# booking at the slot found. Days stay words (resolved when the step runs), so the same request
# gives the same plan on any day. The booking's compensation cancels the event it made.

_CAL_SLOT = re.compile(r"\b(?:time\s+)?slots?\b|\bavailability\b|\bfree\s+time\b", re.I)
_CAL_BOOK = re.compile(r"\b(?:book|schedule|set\s+up|arrange)\b(?P<what>[^.;!?]*)", re.I)
_CAL_UNIT = re.compile(
    r"^(?:\d+(?:\.\d+)?(?:-?(?:minutes?|mins?|hours?|hrs?|h))?|minutes?|mins?|hours?|hrs?)$", re.I
)
_CAL_END = frozenset("with for on at and to between today tomorrow".split())
_CAL_MEETING = re.compile(r"\b(?:meeting|review|call|sync|appointment|interview|standup)\b", re.I)
_CAL_WHO = re.compile(
    r"\b(?:for|with|between)\s+(?P<who>[\w.@+-]+(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+)[\w.@+-]+)*)",
    re.I,
)
_CAL_LENGTH = re.compile(r"(\d+(?:\.\d+)?)[\s-]*(minutes?|mins?|hours?|hrs?|h)\b", re.I)
_CAL_DAY = re.compile(
    r"\b(today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I
)
_NOT_PEOPLE = _STOP | {"slot", "slots", "meeting", "review", "minute", "minutes", "hour", "hours"}


def _calendar_plan(request: str, catalogue: Catalogue) -> dict[str, Any] | None:
    """A find-then-book plan for a calendar request, or None when it is not one."""
    text = " ".join(request.split())
    booking = _CAL_BOOK.search(text)
    asks = _CAL_SLOT.search(text) or (booking and _CAL_MEETING.search(text))
    if not asks or "calendar.find_slots" not in catalogue:
        return None
    people = _calendar_people(text)
    if not people:
        raise PlanningError("a calendar request needs its attendees: say 'for ann and bob'")
    day = (_CAL_DAY.search(text) or ["", "tomorrow"])[1].lower()
    find = {
        "attendees": people,
        "duration_minutes": _calendar_minutes(text),
        "window_start": day,
        "window_end": day,
    }
    steps: list[dict[str, Any]] = [
        {
            "id": "find_slot",
            "tool": "calendar.find_slots",
            "input": find,
            "description": f"Find a slot on {day}",
        }
    ]
    outputs = {"slots": "${steps.find_slot.output.slots}"}
    if booking and "calendar.create_event" in catalogue:
        steps.append(_calendar_booking(booking["what"], people))
        outputs["event"] = "${steps.book.output.uid}"
    return {
        "version": 1,
        "name": _clip(text, 80),
        "steps": steps,
        "outputs": outputs,
        "description": "Planned offline: a calendar request (find a slot, then book it).",
    }


def _calendar_booking(what: str, people: list[str]) -> dict[str, Any]:
    title = _calendar_title(what)
    slot = "${steps.find_slot.output.slots[0]"
    return {
        "id": "book",
        "tool": "calendar.create_event",
        "input": {
            "title": title.capitalize(),
            "start": f"{slot}.start}}",
            "end": f"{slot}.end}}",
            "attendees": people,
        },
        "compensate": {"tool": "calendar.cancel_event", "input": {}},
        "description": f"Book the {title} at the first slot found",
    }


def _calendar_title(what: str) -> str:
    """The words after "book": "a 1 hour team sync with ann" → "team sync"."""
    words: list[str] = []
    for word in what.split():
        low = word.lower().strip(",")
        if low in _CAL_END or _CAL_DAY.fullmatch(low):
            break
        if low not in ("a", "an", "the") and not _CAL_UNIT.match(low):
            words.append(low)
    return " ".join(words[:4]) or "meeting"


def _calendar_people(text: str) -> list[str]:
    for match in _CAL_WHO.finditer(text):
        names = [n for n in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", match["who"]) if n]
        people = [n for n in names if n.lower() not in _NOT_PEOPLE and not n.isdigit()]
        if people:
            return people
    return []


def _calendar_minutes(text: str) -> float:
    match = _CAL_LENGTH.search(text)
    if not match:
        return 30.0
    return float(match[1]) * (60 if match[2].lower().startswith("h") else 1)


# --- small helpers ---------------------------------------------------------------------------------


def _ref(step_id: str, spec: ToolSpec | None) -> str:
    """``${steps.<id>.output.<primary>}`` (the whole output if the tool names no primary)."""
    field_ = spec.primary_output if spec else None
    return f"${{steps.{step_id}.output.{field_}}}" if field_ else f"${{steps.{step_id}.output}}"


def _text_of(sources: list[tuple[str, ToolSpec]]) -> str:
    """Text made of the sources' outputs: one string output as is, else labelled sections."""
    if len(sources) == 1 and _output_type(*sources[0]) == "string":
        return _ref(*sources[0])
    # A labelled section keeps non-string outputs as text (a whole-string reference keeps type).
    return "\n\n".join(f"{sid}:\n{_ref(sid, spec)}" for sid, spec in sources)


def _output_type(step_id: str, spec: ToolSpec) -> str | None:
    props = spec.output_schema.get("properties", {})
    return props.get(spec.primary_output or "", {}).get("type")


def _with_item(task: Task, item: str) -> str:
    """The task's text with its enumeration replaced by one item."""
    part = f" {task.prep} {item}" if task.prep else f": {item}"
    return " ".join(task.text.replace(task.enum_text, part).split())


def _names_earlier(task: Task) -> bool:
    """Does the task speak of earlier results ("them", "the summary", "save …")?"""
    words = _WORD.findall(task.text.lower())
    return (
        bool(_EARLIER.search(task.text))
        or any(w in _PRONOUNS for w in words)
        or (bool(words) and words[0] in _CONSUMER_VERBS)
    )


def _urls(text: str) -> list[str]:
    return list(dict.fromkeys(u.rstrip(".!?:") for u in _URL.findall(text)))


def _file_name(text: str, default: str) -> str:
    found = _FILE.findall(_URL.sub(" ", text))
    return found[-1] if found else default


def _seconds(text: str) -> float:
    match = _DURATION.search(text)
    if not match:
        return 1.0
    unit = (match[2] or "s").lower()
    factor = (
        0.001
        if unit.startswith("ms") or unit.startswith("milli")
        else 60
        if unit.startswith("m")
        else 3600
        if unit.startswith("h")
        else 1
    )
    return min(3600.0, float(match[1]) * factor)


def _json_path(text: str) -> str:
    dotted = re.search(
        r"\b[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)+", _URL.sub(" ", _FILE.sub(" ", text))
    )
    if dotted:
        return dotted.group(0)
    named = re.search(
        r"\b(?:the\s+)?[\"']?(\w+)[\"']?\s+(?:field|key|value|property)\b", text, re.I
    )
    if named and named[1].lower() not in _STOP:
        return named[1]
    words = [w for w in _WORD.findall(text) if w.lower() not in _STOP and w.lower() not in _VERBS]
    return words[-1] if words else "result"


def _url_input(inputs: Mapping[str, Any]) -> str | None:
    """The first input (by name) whose value is a URL."""
    return next(
        (k for k in sorted(inputs) if isinstance(inputs[k], str) and _URL.match(inputs[k])), None
    )


def _mentioned(text: str, inputs: dict[str, Any]) -> list[str]:
    words = set(_WORD.findall(text.lower()))
    return [k for k in inputs if k.lower() in words]


def _step_id(text: str, tool: ToolSpec, item: str | None) -> str:
    """A short slug from verb + object: collect_api, summarise, save_summary."""
    verb = _lead_verb(text) or tool.name.split(".")[-1]
    obj = _host(_urls(item)[0]) if item and _urls(item) else None
    if item and obj is None:
        obj = _slug(item)
    if obj is None:
        obj = _object_word(text, verb)
    slug = _slug(f"{verb}_{obj}" if obj else verb)[:40].strip("_") or "step"
    return slug if re.match(r"[A-Za-z_]", slug) else f"step_{slug}"


def _object_word(text: str, verb: str) -> str | None:
    rest = _FILE.sub(lambda m: m.group(0).split("/")[-1].split(".")[0], text)
    for url in _URL.findall(rest):
        rest = rest.replace(url, _host(url))
    words = _WORD.findall(rest.lower())
    for word in words[1:] if words and words[0] == verb else words:
        if word not in _STOP and word not in _PRONOUNS and not word.isdigit() and word != verb:
            return word
    return None


def _host(url: str) -> str:
    """example.com for https://www.example.com/a, as a slug."""
    host = url.split("//", 1)[-1].split("/")[0].split(":")[0]
    return _slug(host.removeprefix("www."))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:32]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe(plan: Mapping[str, Any]) -> str:
    """A one-line-per-step text view of plan data (for logs and debugging)."""
    lines = []
    for step in plan.get("steps", []):
        deps = ", ".join(step.get("depends_on", [])) or "-"
        lines.append(
            f"{step['id']:<24} {step['tool']:<14} after: {deps}  {json.dumps(step.get('input', {}))}"
        )
    return "\n".join(lines)
