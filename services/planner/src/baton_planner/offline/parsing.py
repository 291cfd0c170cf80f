"""From a request to tasks: sentences, clauses, order ("then"), parallel groups ("at the same
time"), conditions ("if … then … otherwise …"), approvals ("once ann approves") and enumerations
("for api, billing and search"), which stay whole inside their clause and fan out later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from baton_planner.offline.policies import Policies, take_policies
from baton_planner.offline.words import (
    BLANKS_START,
    LANGUAGES,
    PRONOUNS,
    STRONG_VERBS,
    VERBS,
    WEAK_VERBS,
    WORD,
)

_ENUM_WORD = r"(?!(?:and|or|then)\b)[\w\-/:@#%+~]+(?:\.[\w\-/:@#%+~]+)*"
_ENUM_ITEM = rf"{_ENUM_WORD}(?:\s+{_ENUM_WORD}){{0,2}}"
_ENUM = re.compile(
    # a list leads with a preposition, a colon or a dash ("… in one sentence - madrid, athens and
    # vienna")
    rf"(?:\b(?P<prep>for|about|on|from|in|into|to|across|covering|regarding|at|per|of)\s+|:\s+|"
    r"\s[-\u2013\u2014]\s+)"
    rf"(?P<items>{_ENUM_ITEM}(?:\s*,\s*{_ENUM_ITEM})*\s*,?\s+(?:and|or)\s+{_ENUM_ITEM})"
    # the list ends the clause, or a participle follows it ("in english and german announcing …")
    r"(?=\s*(?:[,;!?]|\.(?:\s|$)|$)|\s+(?:and|then)\b|\s+[a-z]+ing\b)",
    re.I,
)
# A list after a colon or a dash with no "and" ("a teaser for each of these: cli, api,
# dashboard", "a haiku for each season - spring, summer, autumn, winter"): three items or more,
# ending the clause.
_ENUM_COLON = re.compile(
    rf"(?P<prep>)(?::|\s[-\u2013\u2014])\s+(?P<items>{_ENUM_ITEM}(?:\s*,\s*{_ENUM_ITEM}){{2,}})"
    r"(?=\s*(?:[;!?]|\.(?:\s|$)|$))",
    re.I,
)
# A list as the subject of a question clause: "find out what umbrella, soylent and hooli charge".
_ENUM_WH = re.compile(
    r"\b(?P<prep>what|how\s+much|how|whether|which\s+of)\s+"
    rf"(?P<items>{_ENUM_WORD}(?:\s*,\s*{_ENUM_WORD})*\s*,?\s+(?:and|or)\s+{_ENUM_WORD})"
    r"(?=\s+(?:each\s+|all\s+)?[a-z]+\b)",
    re.I,
)
_ENUM_SPLIT = re.compile(rf"{BLANKS_START}(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)", re.I)
_SENTENCE = re.compile(rf"(?<=[.!?])\s+(?=[A-Za-z])|{BLANKS_START}\s*;\s*|\n+")
_ORDER = re.compile(
    rf"{BLANKS_START}(?:\s*,\s*|\s+)(?:and\s+)?(?:then|after\s+that|afterwards|finally)\b"
    r"\s*,?\s*",
    re.I,
)
_LEADING_ORDER = re.compile(r"^\s*(?:then|after\s+that|afterwards|finally)\b", re.I)
_CLAUSE = re.compile(rf"{BLANKS_START}(?:\s*,\s*(?:and\s+)?|\s+and\s+)", re.I)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_PARALLEL = re.compile(
    r"(?!(?<=[\s,])[\s,])[\s,]*\b(?:at\s+the\s+same\s+time|in\s+parallel|simultaneously|concurrently|all\s+at\s+once)"
    r"\b[\s,]*",
    re.I,
)
_FILLERS = re.compile(
    r"^(?:(?:please|also|and|then|first|firstly|next|now|finally|kindly|afterwards|after\s+that|"
    r"(?:can|could|would)\s+you|i\s+(?:want|need)\s+you\s+to)\b[\s,]*)+",
    re.I,
)
_IF = re.compile(
    r"^(?:only\s+)?(?:if|when|in\s+case)\s+(?P<cond>.+?)(?:\s*,\s*then\s+|\s+then\s+|\s*,\s*)"
    r"(?P<act>.+?)(?:\s*[,;]?\s*(?:otherwise|else|if\s+not)\s*,?\s+(?P<other>.+))?$",
    re.I,
)
_MIDDLE_IF = re.compile(
    r"^(?P<before>.+?)(?<!\s)\s*(?:,\s*)?(?:and\s*,?\s*)?\bif\s+(?P<cond>[^,]+?)\s*,\s*(?:then\s+)?"
    r"(?P<act>.+)$",
    re.I,
)
_REFERS_BACK = re.compile(
    r"^(?:its|it|they|their|that|this|the\s+(?:result|response|status|answer|call|request|fetch|"
    r"check|site|page|server|endpoint|service|download|reply))\b"
    # a field compared with a value ("beta is true", "the count field is above 5"): a field
    # of what the task before read or fetched (a condition naming its own URL or file checks
    # that instead: it does not match here, as "/" and "." end the name)
    r"|^(?:the\s+)?[A-Za-z_]\w*(?:\s+field)?\s+(?:is|equals?|==|!=|>|<|isn't)\s+"
    r"(?:true|false|empty|null|'[^']*'|\"[^\"]*\"|-?\d+(?:\.\d+)?|(?:above|below|over|under|more|less|"
    r"greater|higher|lower)\b)"
    # a bare field and a bare value, the whole condition ("status is failed", "state equals done")
    r"|^[A-Za-z_]\w*(?:\s+field)?\s+(?:is|equals?|isn't|is\s+not)\s+[A-Za-z_][\w-]*$",
    re.I,
)
_TRAILING_IF = re.compile(
    r"^(?P<act>\S+\s+\S.*?)\s*,?\s+(?:but\s+)?(?:only\s+)?if\s+(?P<cond>.+)$", re.I
)
_APPROVAL = re.compile(
    r"\b(?:(?:after|once|when|with|if)\s+(?:(?P<who1>\w+(?:\s*(?:,|and)\s*\w+)*?)(?:'s)?\s+)?"
    r"(?:approves?|approved|"
    r"approval|sign[\s-]?off|signs\s+off)(?:\s+(?:by|from)\s+(?P<who2>\w+))?"
    r"|(?:ask|get|request|wait\s+for|needs?|requires?)\s+(?:for\s+)?(?:(?P<who3>\w+)(?:'s)?\s+)?"
    r"(?:approval|sign[\s-]?off|to\s+approve(?:\s+it)?)(?:\s+(?:from|of|by)\s+(?P<who4>\w+))?"
    r"(?:\s+(?:first|before(?:\s+that|\s+it)?))?)\b",
    re.I,
)
_NOT_PEOPLE = frozenset("a an the an my our your his her their approval".split())
# Ways of saying "wait" before a length of time ("hold off for 10 minutes", "give it an hour").
_WAIT_IDIOM = re.compile(
    r"\b(?:hold\s+(?:on|off)|hang\s+on|give\s+it|sit\s+tight|let\s+it\s+(?:rest|sit)|"
    r"wait\s+(?:around|a\s+bit))\b(?=(?:\s+for)?\s+(?:\d|an?\b|one\b|two\b|three\b|five\b|"
    r"ten\b|half\b|a\s+quarter\b|a\s+few\b|a\s+couple\b))",
    re.I,
)
# "for each of a, b and c, do x": do x for a, b and c (the list then fans the task out).
_FOR_EACH_FIRST = re.compile(
    r"^(?:for\s+(?:each|every|all)\s+(?:of\s+)?(?:these\s*:?\s*)?)(?P<list>[^,]+(?:,[^,]+)*?\s+"
    r"(?:and|or)\s+[^,]+?)\s*,\s*(?P<rest>[A-Za-z].*)$",
    re.I,
)
# "for berlin, paris and rome, suggest a museum": the same, with the list alone first.
_FOR_LIST_FIRST = re.compile(
    r"^for\s+(?P<list>[\w-]+(?:\s+[\w-]+)?(?:\s*,\s*[\w-]+(?:\s+[\w-]+)?)*\s*,?\s+(?:and|or)\s+"
    r"[\w-]+(?:\s+[\w-]+)?)\s*,\s*(?P<rest>[A-Za-z].*)$",
    re.I,
)
# Verbs of a phrase: "come up with a slogan" is a request for text, as "suggest a slogan" is.
_PHRASAL = re.compile(r"\b(?:come\s+up\s+with|think\s+(?:up|of)|dream\s+up)\b", re.I)
# "put 'welcome aboard' into swedish, finnish and estonian": a translation.
_INTO_LANGUAGE = re.compile(
    r"^(?P<lead>(?:please\s+)?)(?:put|turn|render|say|convert|express)\s+"
    rf"(?P<what>(?:(?!\b(?:and|then)\b)[^,;])+?)\s+(?:in|into)\s+(?P<lang>(?:{'|'.join(sorted(LANGUAGES))})\b.*)$",
    re.I,
)
# "pull the dates out of plan.md", "pick out the totals": extracting.
_OUT_OF = re.compile(r"\b(?:pull|pick|get|take|fish|dig)\s+(?P<what>[^,;.]+?)\s+out\s+of\b", re.I)
_OUT = re.compile(r"\b(?:pull|pick|fish|dig)\s+out\b", re.I)
# "pull the total from it": extracting out of what came before (not "pull https://…": a fetch).
_FROM_EARLIER = re.compile(
    r"\b(?:pull|pick|fish|dig|grab|take)\s+(?P<what>(?:the|its|their|all|every)\b[^,;.]*?)\s+from\s+"
    r"(?=(?:it|them|that|this|those|these)\b)",
    re.I,
)
# "A before you B": A, then B ("give it an hour before you read the results").
_BEFORE_YOU = re.compile(r"(?:\s*,)?\s+before\s+(?:you|we|i)\s+(?=\w)", re.I)
# "once both leads, sam and tia, have approved" / "after kim has signed off": "once sam and tia
# approve" (a role before the names is not a person; the perfect tense is the same gate).
_PERFECT_APPROVAL = re.compile(
    r"\b(?P<when>once|after|when)\s+(?:(?:the|both|all|our|my)\s+)?(?:[\w-]+\s+){0,2}?"
    r"(?:[\w-]+\s*,\s*)?(?P<who>\w+(?:\s*,\s*\w+)*\s+and\s+\w+|\w+)\s*,?\s+(?:have|has|had)\s+"
    r"(?:approved|signed\s+off)\b",
    re.I,
)
# Words between the approvers and their verb: "once ann and ben both approve", "after lee
# will have approved", "when kim does sign off" (the same gate).
_APPROVER_ASIDE = re.compile(
    r"\b(?:both|all|each|also|too|will|would|must|should|can|could|do|does|did|finally)\s+"
    r"(?=(?:have\s+|has\s+)?(?:approved?|approves|signed\s+off|sign\s+off|signs\s+off)\b)",
    re.I,
)
# "only the name, email and city": a list of fields kept whole ("email" is no new clause).
_FIELD_WORD = r"(?:the\s+)?[A-Za-z_][\w.\[\]]*"
_ONLY_LIST = re.compile(
    r"\b(?P<lead>(?:only|just|nothing\s+but)\s+(?:(?:need|want|keep|care\s+about)\s+)?)"
    rf"(?P<items>{_FIELD_WORD}(?:\s*,\s*{_FIELD_WORD})*\s*,?\s+(?:and|&)\s+{_FIELD_WORD})"
    r"(?=\s*(?:[.?!;]|$))",
    re.I,
)
# "tell me his name, email and role": a list of values asked for by name, kept whole too.
_ASKED_LIST = re.compile(
    r"\b(?P<lead>(?:tell|give|show|send)\s+(?:me|us)\s+)"
    rf"(?P<items>(?:the|his|her|its|their)\s+{_FIELD_WORD}(?:\s*,\s*{_FIELD_WORD})*\s*,?\s+(?:and|&)\s+"
    rf"{_FIELD_WORD})(?=\s*(?:[.?!;]|$))",
    re.I,
)


def _fields_joined(found: re.Match[str]) -> str:
    items = [i for i in re.split(r"\s*,\s*(?:and\s+)?|\s+(?:and|&)\s+", found["items"]) if i]
    return found["lead"] + " & ".join(items)


# "A before doing B": A, then do B ("wait half an hour before deleting cache.tmp").
_BEFORE_DOING = re.compile(r"(?:\s*,)?\s+before\s+(?P<verb>[a-z]+)ing\b", re.I)


def _then_doing(found: re.Match[str]) -> str:
    """ ", then delete" for " before deleting", when the gerund is a verb the planner knows."""
    stem = found["verb"].lower()
    for verb in (stem, stem + "e", stem[:-1] if stem[-1:] == stem[-2:-1] else ""):
        if verb in VERBS:
            return f", then {verb}"
    return found.group(0)


@dataclass
class Task:
    """One clause of the request: its text and how it relates to the others."""

    text: str
    ordered: bool = False  # must run after the previous task ("then")
    parallel: bool = False  # part of an explicit parallel group: reads nothing of its group
    items: list[str] = field(default_factory=list)  # an enumeration to fan out over
    enum_text: str = ""
    prep: str = ""
    condition: int | None = None  # index of the task whose result decides if this one runs
    negated: bool = False  # the "otherwise" branch
    is_condition: bool = False  # this task checks something for a later "if"
    condition_text: str = ""  # the condition's words when it is about an earlier task ("its …")
    approval: list[str] | None = None  # a person's approval first (names; empty: anyone)
    joined: bool = False  # follows another task of the same sentence ("read x and explain")
    policies: Policies = field(default_factory=Policies)  # retries and timeout said in words
    context: str = ""  # the whole request (what the other tasks work on)

    @property
    def core(self) -> str:
        """The text without its enumeration: the items are what it works on, not what it does."""
        return self.text.replace(self.enum_text, " ") if self.enum_text else self.text


def split_tasks(request: str) -> list[Task]:
    """The request's tasks in order, enumerations kept whole inside their clause."""
    text = _BEFORE_YOU.sub(", then ", _WAIT_IDIOM.sub("wait", " ".join(request.split())))
    text = _BEFORE_DOING.sub(_then_doing, text)
    text = _PERFECT_APPROVAL.sub(r"\g<when> \g<who> approve", _APPROVER_ASIDE.sub("", text))
    text = _ONLY_LIST.sub(_fields_joined, text)
    text = _ASKED_LIST.sub(_fields_joined, text)
    text = _OUT.sub("extract", _OUT_OF.sub(r"extract \g<what> from", text))
    text = _FROM_EARLIER.sub(r"extract \g<what> from ", text)
    text = _PHRASAL.sub("suggest", text)
    text = _INTO_LANGUAGE.sub(r"\g<lead>translate \g<what> into \g<lang>", text)
    firsts = _FOR_EACH_FIRST.search(text) or _FOR_LIST_FIRST.search(text)
    if firsts or re.search(r"[.!?;]\s*for\s+(?:each|every)\b", text, re.I):
        text = _lists_last(text)
    text, enums = _protect_enumerations(text)
    tasks: list[Task] = []
    for sentence in _SENTENCE.split(text):
        _split_sentence(sentence, enums, tasks)
    _carry_approvals(tasks)
    for task in tasks:
        task.context = request
    return tasks


def _lists_last(text: str) -> str:
    """Each sentence's leading "for each of a, b and c, …" moved after what it does."""
    parts = []
    for sentence in _SENTENCE.split(text):
        found = _FOR_EACH_FIRST.match(sentence.strip()) or _FOR_LIST_FIRST.match(sentence.strip())
        parts.append(f"{found['rest']} for {found['list']}" if found else sentence)
    return ". ".join(p.strip().rstrip(".") for p in parts if p.strip())


def _split_sentence(
    sentence: str, enums: list[tuple[str, str, list[str]]], out: list[Task]
) -> None:
    body = sentence.strip(" .!?")
    conditional = _IF.match(body)
    middle: re.Match[str] | _Unmarked | None = (
        None if conditional is not None else _MIDDLE_IF.match(body)
    )
    if conditional is None and middle is None:
        middle = _unmarked_act(body)
    if conditional is None and middle is None and (lead := _leading_unmarked(body)):
        conditional = _IF.match(f"if {lead[0]}, then {lead[1]}")  # "if it's 503 post …"
    if middle is not None:
        before = _ordered_tasks(middle["before"], enums)
        out.extend(before)
        if before and _REFERS_BACK.match(middle["cond"]):
            for task in _ordered_tasks(middle["act"], enums):
                task.condition_text = middle["cond"]
                out.append(_when(task, len(out) - 1, negated=False))
            return
        conditional = _IF.match(f"if {middle['cond']}, then {middle['act']}")
    if conditional is None:
        conditional = _TRAILING_IF.match(body)
        if conditional is not None and _asks_whether(conditional["act"]):
            conditional = None  # "ask ann if she is free": "if" means "whether" here
    if conditional is None:
        out.extend(_ordered_tasks(body, enums))
        return
    if out and conditional.re is _IF and _REFERS_BACK.match(conditional["cond"]):
        # "check https://…; if it returns 500, post …": the condition is on the task before
        index = len(out) - 1
        for task in _ordered_tasks(conditional["act"], enums):
            task.condition_text = conditional["cond"]
            out.append(_when(task, index, negated=False))
        for task in _ordered_tasks(conditional.groupdict().get("other") or "", enums):
            task.condition_text = conditional["cond"]
            out.append(_when(task, index, negated=True))
        return
    check = _ordered_tasks(conditional["cond"], enums)
    for task in check:
        task.is_condition = True
    out.extend(check)
    index = len(out) - 1
    for task in _ordered_tasks(conditional["act"], enums):
        out.append(_when(task, index, negated=False))
    other = conditional.groupdict().get("other")
    for task in _ordered_tasks(other or "", enums):
        out.append(_when(task, index, negated=True))


_WHETHER_VERBS = frozenset(
    "ask check see verify test find know tell wonder determine confirm figure".split()
)


# "…, and if it's above 300 post 'latency high' to …": no comma between the condition (a
# comparison with a value) and what it gates; the gated task starts at its verb. Matched only
# after the sentence's last "if", with bounded parts: linear on any text.
_IF_NO_COMMA = re.compile(
    r"(?P<cond>[^,]{0,60}?(?:'s\b|\b(?:above|below|over|under|more\s+than|less\s+than|greater\s+than|"
    r"equals?|returns?|is|are|comes?\s+back(?:\s+with)?|gives?|throws|=|>|<)\b)[^,]{0,40}?(?:\d+|'[^',]{0,60}'|\btrue|\bfalse|\bempty|"
    r"\bdown|\bup|\boffline|\bonline|\bunreachable|\bunavailable|\bfailing|\bbroken|\bhealthy))"
    r"\s+(?P<act>[a-z]+\b.*)$",
    re.I,
)


@dataclass
class _Unmarked:
    """The parts of "A, and if <cond> <act>" as ``_MIDDLE_IF`` names them."""

    parts: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.parts[name]


def _unmarked_act(body: str) -> _Unmarked | None:
    ifs = list(re.finditer(r"\bif\s+", body, re.I))
    if not ifs:
        return None
    last = ifs[-1]
    before = body[: last.start()].rstrip(" ,")
    if before.lower().endswith(" and"):
        before = before[:-4].rstrip(" ,")
    found = _IF_NO_COMMA.match(body, last.end())
    if not before.strip() or found is None:
        return None
    verb = WORD.findall(found["act"].lower())[:1]
    if not verb or verb[0] not in VERBS:
        return None
    return _Unmarked({"before": before, "cond": found["cond"], "act": found["act"]})


def _leading_unmarked(body: str) -> tuple[str, str] | None:
    """ "if it comes back 503 post 'down' to …": a leading condition with no comma before the
    task it gates (which starts at its verb)."""
    lead = re.match(r"(?:only\s+)?(?:if|when)\s+", body, re.I)
    found = _IF_NO_COMMA.match(body, lead.end()) if lead else None
    if found is None:
        return None
    verb = WORD.findall(found["act"].lower())[:1]
    return (found["cond"], found["act"]) if verb and verb[0] in VERBS else None


def _asks_whether(act: str) -> bool:
    """Is the "if" a "whether" ("ask ann if …", "… and tell me if …")?"""
    words = WORD.findall(act.lower())
    return bool(words) and (words[0] in _WHETHER_VERBS or bool(set(words[-3:]) & _WHETHER_VERBS))


def _when(task: Task, index: int, negated: bool) -> Task:
    task.condition, task.negated = index, negated
    return task


def _ordered_tasks(text: str, enums: list[tuple[str, str, list[str]]]) -> list[Task]:
    tasks: list[Task] = []
    for i, part in enumerate(_ORDER.split(text)):
        marker = _PARALLEL.search(part)
        lead_ordered = i > 0 or bool(_LEADING_ORDER.match(part))
        clauses = _split_clauses(part)
        # "read a, b and c in parallel and combine them": the marker covers its clause and those
        # before it; a clause after it reads what they made.
        last = next((k for k, c in enumerate(clauses) if _PARALLEL.search(c)), -1)
        for j, clause in enumerate(clauses):
            parallel = marker is not None and j <= last
            task = _make_task(_PARALLEL.sub(" ", clause), enums, ordered=lead_ordered and j == 0)
            if task is not None:
                task.parallel, task.joined = parallel, bool(tasks)
                if parallel and not task.items:
                    _phrase_list(task)
                tasks.append(task)
    return tasks


def _protect_enumerations(text: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
    """Replace each "for a, b and c" with a placeholder so clause splitting cannot break it."""
    enums: list[tuple[str, str, list[str]]] = []
    for pattern in (_ENUM, _ENUM_WH, _ENUM_COLON):
        text = _protect(pattern, text, enums)
    return text, enums


def _protect(pattern: re.Pattern[str], text: str, enums: list[tuple[str, str, list[str]]]) -> str:
    pos = 0
    while match := pattern.search(text, pos):
        items = [i.strip(" .") for i in _ENUM_SPLIT.split(match["items"]) if i.strip(" .")]
        if len(items) < 2 or any(_is_clause(i) for i in items):
            pos = match.start() + 1
            continue
        placeholder = f"\ue000{len(enums)}\ue001"
        enums.append((match.group(0), (match["prep"] or "").lower(), items))
        text = text[: match.start()] + placeholder + text[match.end() :]
        pos = match.start() + len(placeholder)
    return text


def _is_clause(item: str) -> bool:
    """An "item" that starts with a verb and has an object, or names a pronoun, is a clause."""
    words = item.lower().split()
    if any(w in PRONOUNS for w in words):
        return True
    return bool(words) and (words[0] in STRONG_VERBS or (words[0] in WEAK_VERBS and len(words) > 1))


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
    if not words or words[0] not in VERBS:
        return False
    return words[0] in STRONG_VERBS or (len(words) > 1 and words[1] != ",")


def _make_task(clause: str, enums: list[tuple[str, str, list[str]]], ordered: bool) -> Task | None:
    clause = _FILLERS.sub("", clause.strip(" ,.;:!?")).strip(" ,.;:!?")
    approval, clause = _approval(clause)
    clause = _FILLERS.sub("", clause).strip(" ,.;:!?")
    if not WORD.search(clause):
        # Only an approval ("get ann's approval"): it gates the next task.
        return Task(text="", ordered=ordered, approval=approval) if approval is not None else None
    clause, policies = take_policies(clause)
    task = Task(text=clause, ordered=ordered, approval=approval, policies=policies)
    for match in _PLACEHOLDER.finditer(clause):
        original, prep, items = enums[int(match[1])]
        if not task.items:
            task.items, task.enum_text, task.prep = items, original, prep
    task.text = _PLACEHOLDER.sub(lambda m: enums[int(m[1])][0], clause)
    return task


def _approval(clause: str) -> tuple[list[str] | None, str]:
    """Who must approve (None: nobody asked) and the clause without the approval words."""
    match = _APPROVAL.search(clause)
    if match is None:
        return None, clause
    named = [n for n in match.groupdict().values() if n]
    who = [
        n
        for part in named
        for n in re.split(r"\s*,\s*|\s+and\s+", part)
        if n and n.lower() not in _NOT_PEOPLE
    ]
    rest = (clause[: match.start()] + " " + clause[match.end() :]).strip()
    rest = re.sub(r"^(?:and\s+|then\s+|before\s+|first\s+)+", "", rest, flags=re.I)
    return [w.lower() for w in who], rest


def _carry_approvals(tasks: list[Task]) -> None:
    """An approval-only task ("get ann's approval, then pay") gates the task after it."""
    for i, task in enumerate(tasks):
        if task.text or task.approval is None:
            continue
        following = tasks[i + 1] if i + 1 < len(tasks) else None
        if following is not None and following.approval is None:
            following.approval = task.approval
    kept = [i for i, t in enumerate(tasks) if t.text]
    new_index = {old: new for new, old in enumerate(kept)}
    for task in tasks:
        if task.condition is not None:
            task.condition = new_index.get(task.condition)
    tasks[:] = [tasks[i] for i in kept]


def _phrase_list(task: Task) -> None:
    """ "look up flights to tokyo and hotels in kyoto at the same time": one task per phrase."""
    verb = re.match(r"^(?:look\s+up|find\s+out|\w+)\s+", task.text, re.I)
    if verb is None:
        return
    rest = task.text[verb.end() :]
    parts = [p.strip() for p in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", rest) if p.strip()]
    if len(parts) > 1 and not any(_is_clause(p) for p in parts):
        task.items, task.enum_text, task.prep = parts, rest, "\ue002"


def with_item(task: Task, item: str) -> str:
    """The task's text with its enumeration replaced by one item."""
    if task.prep == "\ue002":  # a list of phrases: the item replaces the whole list
        part = f" {item}"
    else:
        part = f" {task.prep} {item}" if task.prep else f": {item}"
    return " ".join(task.text.replace(task.enum_text, part).split())
