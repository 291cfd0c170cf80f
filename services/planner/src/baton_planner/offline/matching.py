"""Choosing a tool for a task from the catalogue itself: its names, keywords and descriptions
(TF-IDF weighted word overlap) and its schemas (which tool can take a URL, a file, a duration, a
template or a JSON path). A tool added later by discovery or a plugin is matched the same way.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from baton_common.catalogue import Catalogue, ToolSpec, ToolStats

from baton_planner.offline import words as w
from baton_planner.offline.meaning import BUILT_IN, DescribedTools
from baton_planner.offline.parsing import Task

# Verbs too general to name a tool by themselves ("get the price", "make a list").
GENERIC_VERBS = frozenset(
    "get make create show find do give put take pull grab retrieve look".split()
)
# "report a bug", "raise a ticket": opening an issue (not a report, not a lift).
_ISSUE = re.compile(
    r"\b(?:report|raise|log|create|open)\s+(?:a|an|the|new|a\s+new)\s+(?:bug|defect|issue|ticket)"
    r"(?:\s+report)?\b",
    re.I,
)
# Verbs that say little about the tool ("check the weather"): what they act on decides, so
# they count once, like the other words.
LIGHT_VERBS = frozenset("check look see search find show".split())
_TEXT_VERBS = frozenset("write draft compose".split())
# Verbs of looking for something: in a file's text that is the model's job.
SEEK_VERBS = frozenset("find search look spot locate identify".split())
_LOOKUP_VERBS = frozenset("get obtain retrieve".split())
# Verbs of taking facts out of a text ("extract the phone numbers from leads.md into phones.md",
# "pick out the headline from https://…/today"): the model's job, with the text read first.
EXTRACT_VERBS = frozenset("extract list identify spot locate".split())
_WEB_THINGS = re.compile(
    r"\b(?:home\s*page|web\s*page|page|site|website|url|link|endpoint|feed)s?\b", re.I
)
_SLOT_BONUS = 10.0
_TARGET = re.compile(
    r"\b(?:to|into|in|from|on|under)\s+(?:the|my|our|a|an)?\s*(?:[a-z]+\s+)?([a-z]+)\b(?!\.)",
    re.I,
)
_OBJECT = re.compile(r"\b(?:the|our|my|your|their)\s+([a-z]+)\b", re.I)
_WRITE_VERBS = frozenset(
    "store save put set write record remember send post add keep update append".split()
)


def props(spec: ToolSpec) -> dict[str, Any]:
    return dict(spec.input_schema.get("properties", {}))


def url_field(spec: ToolSpec) -> str | None:
    """The input field that takes a URL (by its pattern or its name)."""
    for name, schema in props(spec).items():
        if "http" in str(schema.get("pattern", "")) or name in ("url", "uri", "endpoint"):
            return name
    return None


def file_field(spec: ToolSpec) -> str | None:
    """The input field that takes a file name, for tools that speak of files."""
    if "file" not in f"{spec.name} {spec.description}".lower():
        return None
    return next((n for n in ("path", "file", "filename", "file_path") if n in props(spec)), None)


def content_field(spec: ToolSpec) -> str | None:
    return next((n for n in ("content", "text", "body") if n in props(spec)), None)


def takes_content(spec: ToolSpec) -> bool:
    """Can the tool be given fetched or read content (a context, data, a text, a body)?"""
    fields = {"context", "data", "content", "values", "text", "body", "json", "input"}
    return bool(fields & set(props(spec))) or is_template(spec)


def is_query(spec: ToolSpec) -> bool:
    """A tool that picks a value out of data by a path (``data`` + a non-file ``path``)."""
    return "data" in props(spec) and "path" in props(spec) and file_field(spec) is None


def is_template(spec: ToolSpec) -> bool:
    return "template" in props(spec)


def is_wait(spec: ToolSpec) -> bool:
    return "seconds" in props(spec) and len(spec.input_schema.get("required", [])) <= 1


@dataclass
class Roles:
    """The tools a plan needs around a task: to fetch a URL, read a file, write a file."""

    fetcher: ToolSpec | None
    reader: ToolSpec | None
    writer: ToolSpec | None
    author: ToolSpec | None  # writes text from a prompt (the language model tool)
    query: ToolSpec | None = None  # picks a value out of data by a path
    template: ToolSpec | None = None  # fills {placeholders} of a text
    gatherer: ToolSpec | None = None  # collects or researches a subject

    @classmethod
    def of(cls, catalogue: Catalogue) -> Roles:
        specs = [s for s in catalogue.all() if s.from_words]

        def pick(ok: Any) -> ToolSpec | None:
            found = [s for s in specs if ok(s)]
            return min(
                found, key=lambda s: (len(s.input_schema.get("required", [])), s.name), default=None
            )

        return cls(
            fetcher=pick(lambda s: url_field(s) and s.side_effect != "critical"),
            reader=pick(lambda s: file_field(s) and s.side_effect == "read"),
            writer=pick(lambda s: file_field(s) and content_field(s) and s.side_effect == "write"),
            author=pick(lambda s: "prompt" in props(s)),
            query=pick(is_query),
            template=pick(is_template),
            gatherer=pick(lambda s: {"gather", "collect"} <= set(s.keywords)),
        )


@dataclass
class Match:
    """A tool for a task, with the request's words that led to it."""

    tool: ToolSpec
    words: list[str] = field(default_factory=list)
    cue: str = ""  # a schema cue that decided it ("names a URL", "names a duration", …)
    score: float = 0.0


class ToolIndex:
    """TF-IDF vectors of the catalogue's tools: keywords weigh 3, name parts 2, description 1."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.specs = [spec for spec in catalogue.all() if spec.from_words]
        raw = [self._terms(spec) for spec in self.specs]
        df = Counter(t for terms in raw for t in terms)
        n = len(self.specs)
        self.weights = {spec.name: terms for spec, terms in zip(self.specs, raw, strict=True)}
        # the catalogue's words as written (a typo is read as one of them: ``spelling``)
        self.words = frozenset(
            x.lower()
            for spec in self.specs
            for text in (
                spec.name.replace(".", " ").replace("_", " "),
                spec.description,
                *spec.keywords,
            )
            for x in w.WORD.findall(text)
        )
        self.vectors = {
            spec.name: {t: wt * (math.log((1 + n) / (1 + df[t])) + 1) for t, wt in terms.items()}
            for spec, terms in zip(self.specs, raw, strict=True)
        }

    @staticmethod
    def _terms(spec: ToolSpec) -> Counter[str]:
        terms: Counter[str] = Counter()
        for s in w.stems(spec.description):
            terms[s] = max(terms[s], 1)
        for s in w.stems(spec.name.replace(".", " ").replace("_", " ")):
            terms[s] = max(terms[s], 2)
        for keyword in spec.keywords:
            for s in w.stems(keyword):
                terms[s] = 3
        return terms

    def score(self, spec: ToolSpec, words: Counter[str]) -> float:
        vec = self.vectors[spec.name]
        return round(sum(vec.get(t, 0.0) * c for t, c in sorted(words.items())), 9)

    def ranked(
        self,
        words: Counter[str],
        bonus: Mapping[str, float],
        exclude: frozenset[str] = frozenset(),
        stats: Mapping[str, ToolStats] | None = None,
    ) -> list[tuple[float, ToolSpec]]:
        """Tools with a positive score, best first; ties by success rate, p50, then name."""
        scored = [
            (self.score(spec, words) + bonus.get(spec.name, 0.0), spec)
            for spec in self.specs
            if spec.name not in exclude
        ]
        scored = [s for s in scored if s[0] > 0]
        return sorted(scored, key=lambda s: (s[0], *stats_rank(s[1].name, stats)), reverse=True)

    def only_described(self, spec: ToolSpec, words: Counter[str]) -> bool:
        """Do the words meet the tool only in its description (no keyword, no name part)?"""
        weights = self.weights[spec.name]
        return all(weights.get(t, 0) <= 1 for t in words)

    def matched_words(self, spec: ToolSpec, text: str) -> list[str]:
        """The request's words whose stems the tool's vector holds (for the explanation)."""
        vec = self.vectors[spec.name]
        plain = w.without_entities(text).lower()
        found = [x for x in w.WORD.findall(plain) if x not in w.STOP and w.stem(x) in vec]
        return list(dict.fromkeys(found))


def stats_rank(name: str, stats: Mapping[str, ToolStats] | None) -> tuple[Any, ...]:
    """A sort key (higher is better): success rate, then lower p50, then the name (stable)."""
    known = (stats or {}).get(name)
    rate = known.success_rate if known is not None else -1.0
    p50 = known.p50_ms if known is not None and known.p50_ms is not None else math.inf
    return (rate, -p50, [-ord(c) for c in name])


# What comes after these in "log a bug saying the search page crashes" is the issue's text.
_ISSUE_TEXT = re.compile(r"\s*:|\s+(?:saying|that\s+says|titled|called|named|about)\b", re.I)


def intent(text: str) -> str:
    """The words that say what to do: "create a ticket: export times out" and "log a bug saying
    the search page crashes" without their titles."""
    issue = _ISSUE.search(text)
    if issue is None:
        return text
    cut = _ISSUE_TEXT.search(text, issue.end())
    return text[: cut.start()] if cut else text


def task_words(text: str) -> Counter[str]:
    """The task's stems without its URLs, files and quotes; a specific lead verb counts thrice."""
    text = intent(text)
    found = Counter(w.stems(w.without_entities(text)))
    for word in w.WORD.findall(w.without_entities(text).lower()):
        for group in w.SYNONYMS:
            if word.rstrip("s") in group or word in group:
                found.update({w.stem(other) for other in group} - set(found))
        if word in w.ALSO_MEANS and w.stem(w.ALSO_MEANS[word]) not in found:
            found[w.stem(w.ALSO_MEANS[word])] += 1
    verb = w.lead_verb(text)
    if _ISSUE.search(text):
        found[w.stem("issue")] += 2  # the thing opened decides, not the verb
        return found
    if verb and verb not in GENERIC_VERBS and verb not in LIGHT_VERBS:
        found[w.stem(verb)] += 2
    return found


class Matcher:
    """Picks the tool for a task: word overlap plus the schema cues of what the task names."""

    def __init__(self, catalogue: Catalogue, stats: Mapping[str, ToolStats] | None) -> None:
        self.catalogue = catalogue
        self.index = ToolIndex(catalogue)
        self.roles = Roles.of(catalogue)
        self.stats = stats
        self.described = DescribedTools(catalogue)
        # stems of the tools' names and keywords (not of their descriptions)
        self._named = {
            t for terms in self.index.weights.values() for t, n in terms.items() if n > 1
        }

    def choose(self, task: Task, inputs: Mapping[str, Any]) -> Match | None:
        """The best tool for the task, or None when nothing in the catalogue fits its words."""
        text = task.text
        found = task_words(task.core)
        bonus = self._bonus(intent(text), _json_data(task, inputs))
        ranked = self.index.ranked(found, bonus, self._excluded(task, inputs), self.stats)
        best = ranked[0] if ranked else None
        if best is not None and not bonus.get(best[1].name) and self._weak(best[1], found, text):
            best = None  # a passing word of a description is no reason to call a tool
        fetcher = self.roles.fetcher
        verb = w.lead_verb(text)
        # "list every date mentioned in https://…", "get all the email addresses out of
        # signup.log": facts taken out of a page or a file are the model's job; a tool met by
        # the verb ("list" of calendar.list_events) or by what is taken ("email" of a text
        # template) does not do it (a query of JSON data, a reader of the source's kind do)
        only_verb = (
            best is not None
            and not bonus.get(best[1].name)
            and bool(w.urls(text) or w.files(text))
            and not (is_query(best[1]) or file_field(best[1]) or url_field(best[1]))
        )
        # "extract the open questions from rfc.md": the reader met by a word of what is taken
        # ("open") does not take it out either
        by_object = best is not None and best[1] is self.roles.reader
        extracts = verb in EXTRACT_VERBS and (best is None or only_verb or by_object)
        if extracts:
            best = None
        if w.urls(text) and fetcher is not None and _url_decides(best, text) and not extracts:
            tool = best[1] if best is not None and url_field(best[1]) else fetcher
            return Match(tool, self.index.matched_words(tool, text), "the task names a URL")
        if (
            best is None
            and w.lead_verb(text) in _LOOKUP_VERBS
            and not w.urls(text)
            and not _WEB_THINGS.search(text)  # "get the homepage": which one? (a URL is asked)
        ):
            # "get the weather for oslo": without a URL, getting is looking something up.
            found = found + Counter({w.stem("look"): 1, w.stem("find"): 1})
            ranked = self.index.ranked(found, bonus, self._excluded(task, inputs), self.stats)
            best = ranked[0] if ranked else None
        if best is None:
            return self._by_entity(text) or self._by_meaning(task.core)
        tool = best[1]
        if tool is self.roles.reader and w.files(text):
            tool = self.reader_for(w.files(text)[0]) or tool  # "read manual.pdf": the PDF one
        return Match(
            tool, self.index.matched_words(tool, task.core), self._cue(tool, text), best[0]
        )

    def _unnamed(self, text: str) -> str:
        """The text without the words that name a tool ("the CRM entry": crm.lookup_customer)."""
        return " ".join(x for x in text.split() if w.stem(x.strip("?!.,")) not in self._named)

    def reader_for(self, name: str) -> ToolSpec | None:
        """The tool that reads a file: one whose words name the file's kind ("Extract the
        text of a PDF file" for manual.pdf), else the plain reader."""
        kind = name.rsplit(".", 1)[-1].lower()
        for spec in self.index.specs:
            words = f"{spec.name} {spec.description} {' '.join(spec.keywords)}".lower()
            if file_field(spec) and spec.side_effect == "read" and re.search(rf"\b{kind}\b", words):
                return spec
        return self.roles.reader

    def _weak(self, spec: ToolSpec, found: Counter[str], text: str) -> bool:
        """A passing word of a description, or only the verb of a described tool ("list the
        holidays in it" is no listing of commits): no reason to call it. A question about a
        file is led by no verb, but the file is what it asks about ("what are the action items
        in notes.md?" is no critical action, "what does readme.md say?" no model's "says")."""
        verb = w.lead_verb(text)
        about_file = bool(w.files(text)) and _ASKS.match(text.strip()) is not None
        if (bool(verb) or about_file) and self.index.only_described(spec, found):
            return True
        if about_file and spec.side_effect == "critical":
            return True  # "which payment ids appear in ledger.csv?" asks; it pays nobody
        if not verb or spec.name in BUILT_IN:
            return False
        met = {t for t in found if t in self.index.vectors[spec.name]}
        return met <= {w.stem(verb)} and len(found) > 1

    def _by_entity(self, text: str) -> Match | None:
        """No word fits: files "into" a file mean writing them there; a file alone, reading it;
        a duration alone ("after 10 minutes"), waiting."""
        wait = next((s for s in self.index.specs if is_wait(s)), None)
        if wait is not None and w.TIMED.search(w.digits(w.without_entities(text))):
            return Match(wait, [], "the task names a duration")
        writer = self.roles.writer
        several = len(w.files(text)) > 1 or w.names_earlier(text)
        extracts = w.lead_verb(text) in EXTRACT_VERBS
        if writer is not None and w.destination(text) and several and not extracts:
            return Match(writer, [], "the task names files and one to put them in")
        verb = w.lead_verb(text)
        # "look in package.json": a place alone to look in is a read (the next task says what for)
        looks_in = verb in SEEK_VERBS and not set(w.stems(w.without_entities(text))) - {
            w.stem(verb)
        }
        if verb and verb not in GENERIC_VERBS and verb not in ("open", "load", "show", "print"):
            if not looks_in:
                return None  # "count the words in essay.txt": the model is asked, with it read
        if verb in SEEK_VERBS and w.files(text) and not looks_in:
            return None  # "find every URL in links.md": the same
        if asks_about_text(text):
            return None  # "which names appear in guestlist.txt?": the model answers, with it read
        if w.files(text) and self.roles.reader is not None:
            reader = self.reader_for(w.files(text)[0]) or self.roles.reader
            return Match(reader, [], "the task names a file")
        return None

    def _by_meaning(self, text: str) -> Match | None:
        """No word fits, no entity decides: a tool whose description means the task."""
        found = self.described.best(w.without_entities(text))
        if found is None:
            return None
        tool, score = found
        return Match(tool, [], f"its description means the task ({score:.2f})", score)

    def _bonus(self, text: str, json_data: bool) -> dict[str, float]:
        """Tools whose schema takes what the task names get a bonus."""
        bonus = self._target_bonus(text)
        checks = [
            (
                w.json_path(text) is not None
                or "json" in w.without_entities(text).lower()
                or (json_data and bool(w.named_fields(text))),  # "give me just the email"
                is_query,
            ),
            (bool(w.PLACEHOLDER_NAME.search(text)), is_template),
            (bool(w.quoted(text)) and bool(w.files(text)), _writes_content),
            (
                bool(w.TIMED.search(w.digits(w.without_entities(text))))
                and bool(w.lead_verb(text)),
                is_wait,
            ),
        ]
        unnamed = self._unnamed(text)  # once: it stems every word of the task
        for spec in self.index.specs:
            if constrained_values(props(spec), unnamed):  # "#ops", "NVDA"
                bonus[spec.name] = bonus.get(spec.name, 0.0) + _SLOT_BONUS
        for named, fits in checks:
            if named:
                for spec in self.index.specs:
                    if fits(spec):
                        bonus[spec.name] = bonus.get(spec.name, 0.0) + _SLOT_BONUS
        return bonus

    def _target_bonus(self, text: str) -> dict[str, float]:
        """ "… in the shared context", "… to the calendar": a tool family named as the place the
        task acts on (its name's first part) is a strong cue; the verb's direction (store vs
        read) then prefers its writing or its reading tools."""
        bonus: dict[str, float] = {}
        plain = w.without_entities(text)
        places = {w.stem(m[1]) for m in _TARGET.finditer(plain)}
        # a described tool's family named as the thing acted on: "check the wiki for …"
        objects = places | {w.stem(m[1]) for m in _OBJECT.finditer(plain)}
        first = w.WORD.findall(text.lower())[:1]
        writes = bool(first) and first[0] in _WRITE_VERBS
        for spec in self.index.specs:
            # the family: a name's parts before the tool's own ("wiki" of mcp.wiki.search_pages)
            family = {w.stem(part) for part in spec.name.split(".")[:-1]}
            if family & (places if spec.name in BUILT_IN else objects):
                same_way = (spec.side_effect != "read") == writes
                bonus[spec.name] = 2 * _SLOT_BONUS + (_SLOT_BONUS if same_way else 0.0)
        return bonus

    def _excluded(self, task: Task, inputs: Mapping[str, Any]) -> frozenset[str]:
        text = task.text
        out: set[str] = set()
        if w.sends(text) and not w.urls(text):
            # Sending is not making text: "send a message to bob" needs a tool that sends.
            out |= {s.name for s in self.index.specs if "prompt" in props(s) or is_template(s)}
        if not (w.quoted(text) or w.names_earlier(text) or task.ordered):
            # A template tool needs a template, or earlier outputs to lay out ("report it").
            out |= {s.name for s in self.index.specs if is_template(s)}
        if not w.files(text) and not w.refers_back(text) and not _file_input(inputs):
            # Without a file name a file cannot be read or deleted ("open an issue", "file a
            # bug"): another tool, or a question, fits better.
            out |= {s.name for s in self.index.specs if file_field(s) in _required(s)}
        if not w.urls(text) and not url_input(inputs):
            # Without a URL an HTTP call cannot be made, whatever the words say ("get the price").
            out |= {s.name for s in self.index.specs if url_field(s) in _required(s)}
        if w.files(text) and not w.destination(text):
            # "find every URL in links.md": the file is read for a tool that takes its text or
            # its name, not for one that takes neither.
            out |= {
                s.name
                for s in self.index.specs
                if not file_field(s)
                and not takes_content(s)
                and "prompt" not in props(s)
                and s.side_effect != "critical"
                and not is_wait(s)
            }
        if not _json_data(task, inputs):
            # "extract the dates from plan.md": facts out of text are the model's job; a query
            # picks a value out of JSON data only.
            out |= {s.name for s in self.index.specs if is_query(s)}
        if _INQUIRY.match(text.strip()):
            # "anything in the knowledge base about vpn?": a question looks things up; it
            # makes, changes or pays for nothing
            out |= {s.name for s in self.index.specs if s.side_effect in ("write", "critical")}
        if w.lead_verb(text) in _TEXT_VERBS and not w.files(text) and "file" not in text.lower():
            # "write a report" asks for text, not a file.
            out |= {s.name for s in self.index.specs if file_field(s)}
        return frozenset(out)

    @staticmethod
    def _cue(tool: ToolSpec, text: str) -> str:
        if is_template(tool) and w.PLACEHOLDER_NAME.search(text):
            return "the task has {placeholders}"
        if is_query(tool) and (w.json_path(text) or w.named_fields(text)):
            return f"the task names the path {w.json_path(text) or w.named_fields(text)[0]!r}"
        if is_wait(tool):
            return "the task names a duration"
        return ""


_ASKS = re.compile(
    r"^(?:what|which|who|whom|where|when|how\s+(?:many|much|often|long)|is\s+there|are\s+there|"
    r"does|do|did|is|are)\b",
    re.I,
)


# A question that asks what there is (not a request put politely: "can you open a ticket?").
_INQUIRY = re.compile(
    r"^(?:what|which|who|whom|where|when|how|why|is\s+there|are\s+there|anything|any\b|"
    r"(?:do|did|does)\s+(?:we|i|you|they|it|the|our|my)\b|have\s+(?:we|i|you)\s+(?:got|any)\b)"
    r"(?!.*\b(?:create|make|open|add|write|file|raise|log|post|send|book|delete|pay)\b)",
    re.I,
)


def asks_about_text(text: str) -> bool:
    """A question about what a file says ("what dates are mentioned in schedule.txt?"), not
    about the file itself ("what's in notes.txt?": a read)."""
    if not w.files(text) or not _ASKS.match(text.strip()):
        return False
    words = set(w.stems(w.without_entities(text))) - {"insid", "say", "says", "contain"}
    return bool(words)


def _url_decides(best: tuple[float, ToolSpec] | None, text: str) -> bool:
    """Is the task's URL what its tool works on? Not when the best tool takes content (then the
    URL is fetched first for it: "summarise https://…"), unless the task sends to the URL."""
    if best is None or w.sends(text) or url_field(best[1]):
        return True
    return not takes_content(best[1])


_TOKEN = re.compile(r"(?<![\w#@])[#@]?\w[\w.#@/-]*")


def constrained_values(known: Mapping[str, Any], text: str) -> dict[str, str]:
    """Text fields with a pattern (not a URL's) and the word of ``text`` that fits each:
    "#general" for a channel ``^#[a-z]+$``, "TSLA" for a ticker ``^[A-Z]{1,6}$``. Words of one
    character ("I", "a") fit too many patterns to say anything."""
    words = _tokens(text)
    found: dict[str, str] = {}
    for name, schema in known.items():
        if fits := _fitting(name, schema, words):
            found[name] = fits[0]
    return found


def listed_values(spec: ToolSpec, text: str) -> list[str]:
    """A list of values for the tool's one constrained required field, each fitting its
    pattern, named one after the other ("quote AMD and INTC", "tickers MSFT, GOOG, AMZN"):
    one call each. Fewer than two: none."""
    known = props(spec)
    fields = [n for n in _required(spec) if isinstance(known.get(n), dict)]
    words = _tokens(text)
    for name in fields:
        fits = list(dict.fromkeys(_fitting(name, known[name], words)))
        joined = r"\s*(?:,\s*(?:and\s+)?|\s+(?:and|&)\s+)\s*".join(map(re.escape, fits))
        if len(fits) > 1 and re.search(rf"(?<![\w#@]){joined}(?!\w)", text):
            return fits
    return []


def _tokens(text: str) -> list[str]:
    words = [t.rstrip(".") for t in _TOKEN.findall(w.URL.sub(" ", text))]
    return [t for t in words if len(t) > 1]


def _fitting(name: str, schema: Any, words: list[str]) -> list[str]:
    """The words that fit a text field's pattern (none for a URL's or an unpatterned field)."""
    pattern = schema.get("pattern") if schema.get("type") == "string" else None
    if not pattern or "http" in pattern or name in ("url", "uri", "endpoint"):
        return []
    try:
        return [t for t in words if re.fullmatch(pattern.strip("^$"), t)]
    except re.error:
        return []


def _json_data(task: Task, inputs: Mapping[str, Any]) -> bool:
    """Does the task work on JSON data: it names a path or a field, a JSON file or an API, or
    (naming no data of its own) the request does, or the inputs hold structured values?"""
    text = task.text
    if w.json_path(text) is not None:
        return True
    if w.json_like(w.URL.sub(" ", text)) and _has_data(task, inputs):
        return True  # "the api's answer" of a URL or input; not "check the status of the api"
    own = w.urls(text) + w.files(text)
    if own:
        return any(w.json_like(x) for x in own)
    if any(isinstance(v, (dict, list)) for v in inputs.values()):
        return True
    return w.json_like(task.context)


def _has_data(task: Task, inputs: Mapping[str, Any]) -> bool:
    """Is there data to pick from: a URL or file in the request, an input, or earlier results?"""
    context = task.context or task.text
    return bool(w.urls(context) or w.files(context) or inputs or w.refers_back(task.text))


def _writes_content(spec: ToolSpec) -> bool:
    return bool(file_field(spec)) and bool(content_field(spec)) and spec.side_effect == "write"


def _required(spec: ToolSpec) -> list[str]:
    return list(spec.input_schema.get("required", []))


def _file_input(inputs: Mapping[str, Any]) -> bool:
    return any(isinstance(v, str) and w.FILE.fullmatch(v) for v in inputs.values())


def url_input(inputs: Mapping[str, Any]) -> str | None:
    """The first input (by name) whose value is a URL."""
    return next(
        (k for k in sorted(inputs) if isinstance(inputs[k], str) and w.URL.match(inputs[k])), None
    )
