"""The offline planner: deterministic plans from a request without any model.

The request is split into tasks (``parsing``), each task is matched to the catalogue tool whose
words and schema fit it best (``matching``), the steps are routed — reads before, saves after,
earlier outputs to the steps that need them (``building``) — and every step carries the reason it
is there (``explaining``). A request it cannot plan with confidence is refused with what it
understood and a suggestion. Same request, catalogue and statistics: same plan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolSpec, ToolStats
from baton_common.plans import Plan, PlanInvalid, validate_plan

from baton_planner.offline import calendar, lexicon, parsing, refusals, spelling
from baton_planner.offline import words as w
from baton_planner.offline.building import Builder
from baton_planner.offline.calendar import calendar_plan
from baton_planner.offline.conditions import UnclearCondition
from baton_planner.offline.explaining import Draft, PlanRefused, StepExplanation
from baton_planner.offline.filling import MissingInput
from baton_planner.offline.matching import (
    EXTRACT_VERBS,
    GENERIC_VERBS,
    SEEK_VERBS,
    Match,
    Matcher,
    asks_about_text,
    file_field,
    is_query,
    is_template,
    is_wait,
    props,
    url_field,
)
from baton_planner.offline.memory import PlanMemory
from baton_planner.offline.parsing import Task, split_tasks
from baton_planner.planners import PlanningError


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
        self.memory = memory if memory is not None else PlanMemory()
        self.stats = stats  # tool name -> how it fared: breaks ties between equally fitting tools
        self._matcher: tuple[tuple[int, int, int], Matcher] | None = None
        self._vocabulary: tuple[Matcher, frozenset[str]] | None = None

    @property
    def matcher(self) -> Matcher:
        """Built again when tools were discovered since (the catalogue's version), for another
        catalogue, or when the planner service handed in other figures (``stats``)."""
        key = (id(self.catalogue), self.catalogue.version, id(self.stats))
        if self._matcher is None or self._matcher[0] != key:
            self._matcher = (key, Matcher(self.catalogue, self.stats))
        return self._matcher[1]

    @property
    def vocabulary(self) -> frozenset[str]:
        """The words a typo is read as (the planner's and the catalogue's), with the matcher."""
        matcher = self.matcher
        if self._vocabulary is None or self._vocabulary[0] is not matcher:
            rules = spelling.rule_words(lexicon, calendar, parsing, w)
            self._vocabulary = (matcher, spelling.vocabulary(matcher.index.words, rules))
        return self._vocabulary[1]

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Plan data for ``request`` that passes ``validate_plan``."""
        return self.draft(request, inputs).plan

    def plan_sync(
        self,
        request: str,
        inputs: dict[str, Any] | None = None,
        stats: Mapping[str, ToolStats] | None = None,
    ) -> dict[str, Any]:
        """The same as ``plan``, without a loop (it never waits on anything)."""
        planner = self if stats is None else OfflinePlanner(self.catalogue, self.memory, stats)
        return planner.draft(request, inputs).plan

    async def explain(self, request: str, inputs: dict[str, Any]) -> Draft:
        """The plan and why each step is in it (the gateway's draft route shows it)."""
        return self.draft(request, inputs)

    def draft(self, request: str, inputs: dict[str, Any] | None = None) -> Draft:
        """The plan with its explanation; raises ``PlanningError`` (``PlanRefused``) if unsure."""
        inputs = inputs or {}
        if not request or not request.strip():
            raise PlanningError("the request is empty: say in words what should be done")
        if len(request) > w.MAX_REQUEST_CHARS:  # bounds the work of its patterns, too
            raise PlanningError(
                f"the request is {len(request)} characters; the offline planner reads at most "
                f"{w.MAX_REQUEST_CHARS}: say what to do in a few sentences and give long text "
                "as an input"
            )
        remembered = self.memory.recall_valid(request, self.catalogue, inputs)
        if remembered is not None:
            return Draft(remembered, _remembered(remembered))
        request = spelling.corrected(w.plain_words(request), self.vocabulary)
        request = lexicon.plain(w.halves(w.counted(request)))
        booked = calendar_plan(request, self.catalogue)
        if booked is not None:
            draft = Draft(*booked)
        else:
            tasks = split_tasks(request)
            if not tasks:
                raise PlanningError(
                    f"no task found in the request {request!r}: start with a verb, e.g. 'fetch …'"
                )
            draft = self._build(request, tasks, inputs)
        try:
            validate_plan(draft.plan, self.catalogue, inputs)
        except PlanInvalid as exc:  # what the words left out (an attendee, a duration): ask
            steps = draft.plan.get("steps") or []
            raise PlanRefused(
                [f"step {s.get('id')}: {s.get('tool')}" for s in steps],
                [str(p) for p in exc.problems],
                "say the missing values in words (who, how long, which file…), or give a plan",
            ) from None
        return draft

    def _build(self, request: str, tasks: list[Task], inputs: dict[str, Any]) -> Draft:
        if not inputs:
            tasks = [part for task in tasks for part in self._provided_first(task)]
        matches = [self.match(task, inputs) for task in tasks]
        tasks, matches = self._without_asides(tasks, matches)
        if any(m is None for m, _ in matches):
            raise refusals.unmatched([t.text for t in tasks], matches)
        builder = Builder(self.matcher, inputs)
        for task, (match, _) in zip(tasks, matches, strict=True):
            assert match is not None
            own = w.urls(task.text) or w.files(task.text) or w.quoted(task.text)
            # a pronoun after the first clause points at what that clause named ("pay 40 eur
            # to vendor 12, it needs kim's ok first"), not at results before the task
            pointing = w.refers_back(w.first_clause(task.text))
            if not builder.groups and not inputs and not own and pointing:
                raise refusals.dangling(task.text)
            if not own and not inputs and w.vague(task.text):
                raise refusals.vague(task.text)
            done = [f"{g.task.text!r} → {g.tool.name}" for g in builder.groups]
            try:
                builder.add(task, match)
            except UnclearCondition as exc:
                raise refusals.condition(done, str(exc)) from None
            except MissingInput as exc:
                raise refusals.missing(done, task.text, exc) from None
        plan = {
            "version": 1,
            "name": w.clip(" ".join(request.split()), 80),
            "description": "Planned offline: tasks split from the request and matched to tools "
            "by their words and schemas.",
            "steps": builder.steps,
            "outputs": builder.outputs(),
        }
        return Draft(plan, builder.notes)

    def _provided_first(self, task: Task) -> list[Task]:
        """A text task or a send whose object another tool provides ("summarise the last 10
        commits of the web-app repo", "post the forecast for paris to #travel"): that tool
        gets it first, and the task works on what it returned."""
        found = _WORKS_ON.match(task.text)
        if found is None or task.items or _own_entities(Task(found["what"])):
            return [task]
        if w.refers_back(found["what"]) or w.vague(f"get {found['what']}"):
            return [task]
        provider = self.matcher.choose(Task(f"get {found['what']}"), {})
        if provider is None or not _provides(provider.tool) or not provider.words:
            return [task]
        if w.stem(found["verb"]) in self.matcher.index.vectors[provider.tool.name]:
            return [task]  # the tool does the verb itself: "send an sms saying …"
        first = Task(f"get {found['what']}", ordered=task.ordered, approval=task.approval)
        rest = lexicon.plain(f"{found['verb']} it{found['rest'] or ''}")
        return [first, Task(rest, ordered=True, joined=True, policies=task.policies)]

    def _without_asides(
        self, tasks: list[Task], matches: list[tuple[Match | None, str]]
    ) -> tuple[list[Task], list[tuple[Match | None, str]]]:
        """Drop what only frames the other tasks: a question no tool answers when the next
        task says where the answer is ("what's the latest tag? it's the tag_name field of
        https://…"), a task that only names the tool another task uses ("who owns globex?
        check the CRM"), and a clause that only greets, thanks or says how often."""
        if len(tasks) < 2:
            return tasks, matches
        tools = [m.tool if m is not None else None for m, _ in matches]
        for i, task in enumerate(tasks[:-1]):
            if tools[i] is None and _only_values(task):  # "with name=Rui, render '{name}'…"
                tasks[i + 1].text += f" with {task.text.split(None, 1)[-1]}"
        filled = _fillings(tasks)  # "take the template '…{ver}…' and fill it with ver=3.1"
        details = _details(tasks, tools)  # "what changed in the auth repo? last 8 commits"
        kept = []
        for i, task in enumerate(tasks):
            if i in filled or i in details:
                continue
            others = [t for j, t in enumerate(tools) if j != i and t is not None]
            question = _QUESTION.match(task.text) is not None and w.lead_verb(task.text) is None
            if tools[i] is None and question and others and not _own_entities(task):
                continue
            if tools[i] is None and _only_values(task) and i + 1 < len(tasks):
                continue
            if _only_names(task, others):
                continue
            if others and w.only_framing(task.text):
                continue  # "Hi!", "thanks a lot", "every morning": framing, not a task
            if others and w.NARRATIVE.match(task.text) and not _own_entities(task):
                continue  # "I'm preparing the board pack. Please read …": the situation
            told = w.STATEMENT.match(task.text) and w.lead_verb(task.text) is None
            if others and told and not task.text.rstrip().endswith("?") and not _own_entities(task):
                continue  # "refund order 12? the box never came": why, not what
            kept.append(i)
        if len(kept) == len(tasks) or not kept:
            return tasks, matches
        return [tasks[i] for i in kept], [matches[i] for i in kept]

    def match(self, task: Task, inputs: Mapping[str, Any]) -> tuple[Match | None, str]:
        """The task's tool, or None and the reason none fits with confidence."""
        told = w.TELLS_PERSON.match(task.text)
        if told and not (w.urls(task.text) or "#" in task.text or w.EMAIL.search(task.text)):
            return None, "no tool in the catalogue reaches a person: say where to send it (a URL)"
        found = self.matcher.choose(task, inputs)
        if found is not None:
            return found, ""
        if w.sends(task.text) and not w.urls(task.text):
            return None, "no tool in the catalogue sends it (making the text is not sending it)"
        verb = w.lead_verb(task.text)
        seeks = verb in SEEK_VERBS or verb in EXTRACT_VERBS
        if seeks and w.files(task.text) and (fallback := self._fallback()) is not None:
            why = f"{verb!r} in a file's text: the language model is asked, with the file read"
            return Match(fallback, [], why), ""
        if asks_about_text(task.text) and (fallback := self._fallback()) is not None:
            why = "a question about a file's text: the language model answers it, with it read"
            return Match(fallback, [], why), ""
        if _MAKES_SOMETHING.match(task.text) and not _own_entities(task):
            # "give me 3 title ideas for my blog post": new text, whatever its words name
            if (fallback := self._fallback()) is not None:
                why = "something new to make: the language model is asked to write it"
                return Match(fallback, [], why), ""
        unrestricted = self.matcher.choose(task, {"_": "https://example.com"})
        if unrestricted is not None and url_field(unrestricted.tool):
            return None, f"{unrestricted.tool.name} needs a URL: name it, or pass one as an input"
        with_file = self.matcher.choose(task, {"_": "file.txt"})
        if with_file is not None and file_field(with_file.tool):
            return None, f"{with_file.tool.name} needs a file name (such as notes.md)"
        verb = w.lead_verb(task.text)
        plain = (
            verb not in GENERIC_VERBS
            or (verb in SEEK_VERBS and bool(w.files(task.text)))
            or _MAKES_SOMETHING.match(task.text) is not None  # "give me a fun fact about …"
        )
        if verb and plain and (fallback := self._fallback()) is not None:
            why = f"no tool names {w.lead_verb(task.text)!r}: the language model is asked to do it"
            return Match(fallback, [], why), ""
        return None, "no tool in the catalogue fits these words"

    def _fallback(self) -> ToolSpec | None:
        """The text tool a plain instruction falls back to ("say hello", "tell a joke")."""
        prompt_tools = [
            s for s in self.catalogue.all() if "prompt" in s.input_schema.get("properties", {})
        ]
        return prompt_tools[0] if prompt_tools else None

    def remember(self, request: str, plan: Mapping[str, Any] | Plan) -> None:
        """Learn a plan that worked: the same request gets it next time."""
        self.memory.remember(request, plan)


_QUESTION = re.compile(r"^(?:what|which|who|where|how|when)\b", re.I)
# A text task or a send and its object: "summarise <the last 10 commits of x>( into y.md)",
# "post <the forecast for paris>( to #travel)".
_WORKS_ON = re.compile(
    r"^(?P<verb>summari[sz]e|translate|explain|analy[sz]e|compare|rank|classify|post|send|share|"
    r"forward|publish)\s+(?P<what>(?:the|a|an|today's|tomorrow's|this\s+week's|my|our|latest|"
    r"recent|last)\b(?:(?!\b(?:into|to|in|as|and|then)\s)[^,;])+?)"
    r"(?P<rest>\s+(?:into|to|in|as)\s+.*)?$",
    re.I,
)


def _provides(tool: ToolSpec) -> bool:
    """Does the tool look something up (read-only, not the language model or a template, not a
    file, a URL or a wait)?"""
    plain = not ("prompt" in props(tool) or is_template(tool) or is_wait(tool) or is_query(tool))
    return plain and tool.side_effect == "read" and not file_field(tool) and not url_field(tool)


# A light verb with something new to make as its object ("give me a fun fact", "make a list
# of …"): text to write, unlike "get the price" (something definite to look up).
_MAKES_SOMETHING = re.compile(
    r"^(?:give|make|create|tell|do)\s+(?:me\s+|us\s+)?(?:a|an|some|one|two|three|four|five|\d+)"
    r"\s+[a-z]",
    re.I,
)


def _only_values(task: Task) -> bool:
    """A clause of values alone ("with name=Rui"): they belong to the task after it."""
    pairs = w.pairs(task.text)
    rest = w.PAIR.sub(" ", task.text)
    return bool(pairs) and not (set(w.stems(rest)) - {"with", "using"})


# The words of a clause that only gives a template its values ("fill it with ver=3.1", "and
# populate them using a=1"): a filling verb, a pronoun, the template named.
_FILLING = frozenset(
    w.stem(x)
    for x in "with using fill in populate complete render apply use plug substitute put it them "
    "its the values value template placeholders into".split()
)


def _fillings(tasks: list[Task]) -> set[int]:
    """The clauses that only fill the template of the task before them: their values join
    that task (which then fills its template) and they are dropped."""
    found = set()
    for i in range(1, len(tasks)):
        task, before = tasks[i], tasks[i - 1]
        rest = set(w.stems(w.PAIR.sub(" ", task.text)))
        templated = any(w.PLACEHOLDER_NAME.search(q) for q in w.quoted(before.text))
        if templated and w.pairs(task.text) and rest <= _FILLING and i - 1 not in found:
            before.text += " with " + " ".join(m[0] for m in w.PAIR.finditer(task.text))
            found.add(i)
    return found


def _details(tasks: list[Task], tools: list[ToolSpec | None]) -> set[int]:
    """The verb-less fragments that only add a detail to the task before them, the same tool
    fitting both ("what changed in the auth-service repo? last 8 commits": one call, with its
    limit): each is joined to that task, and is no task of its own."""
    joined = set()
    for i in range(1, len(tasks)):
        task, tool = tasks[i], tools[i]
        short = len(w.WORD.findall(task.text)) <= 4
        fragment = w.lead_verb(task.text) is None and _QUESTION.match(task.text) is None
        if tool is not None and tool is tools[i - 1] and short and fragment:
            if not _own_entities(task):
                tasks[i - 1].text += f", {task.text}"
                joined.add(i)
    return joined


def _own_entities(task: Task) -> bool:
    return bool(w.urls(task.text) or w.files(task.text) or w.quoted(task.text))


def _only_names(task: Task, others: list[ToolSpec]) -> bool:
    """Does the task only name a tool another task already uses ("check the CRM")?"""
    words = set(w.stems(w.without_entities(task.core)))
    verb = w.lead_verb(task.text)
    words.discard(w.stem(verb) if verb else "")
    return bool(words) and any(
        words <= set(w.stems(o.name.replace(".", " ").replace("_", " "))) for o in others
    )


def _remembered(plan: Mapping[str, Any]) -> list[StepExplanation]:
    why = "this request was planned before and that plan succeeded: it is used again"
    return [
        StepExplanation(s["id"], s["tool"], s.get("description") or "", [], why)
        for s in plan.get("steps", [])
    ]
