"""From matched tasks to steps: what each step reads (files, URLs, earlier outputs), what runs
after what, fan-out over enumerations, results saved where the request says, conditions, gates.

Routing rules, in words: a task that names a file or URL its tool cannot take gets a step that
reads or fetches it first; a task that says where to save ("… into c.txt") gets a write after it;
a task that speaks of earlier results ("summarise them") reads the previous task's steps (or the
run of independent tasks before it); "then" and waits order steps; the rest runs in parallel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from baton_common.catalogue import Catalogue, ToolSpec

from baton_planner.offline import words as w
from baton_planner.offline.conditions import approval, when
from baton_planner.offline.explaining import StepExplanation, describe_words
from baton_planner.offline.filling import Need, Source, cased_names, fill
from baton_planner.offline.matching import (
    Match,
    Matcher,
    file_field,
    is_query,
    is_template,
    is_wait,
    listed_values,
    props,
    url_field,
)
from baton_planner.offline.naming import plan_outputs, step_slug
from baton_planner.offline.parsing import Task, with_item

_EACH = re.compile(r"\b(?:separately|individually|each|one\s+by\s+one)\b", re.I)
_DIGEST_VERBS = frozenset(
    "summarise summarize analyse analyze compare rank evaluate assess".split()
)
_A_DIGEST = re.compile(
    r"\b(?:a|an)\s+(?:short\s+|brief\s+|quick\s+)?(summary|overview|digest|recap|comparison)\b",
    re.I,
)
# Text tasks made once per source they name: a summary of three files is three summaries.
_ONE_EACH_VERBS = frozenset(
    "summarise summarize translate proofread classify outline describe explain".split()
)
_NO_FAN_OUT = re.compile(r"\b(?:compare|comparison|combine|merge|between|versus|vs|both)\b", re.I)


# A verb and a definite object: "post the owner …", "send their answers …".
_DEFINITE = re.compile(r"^\w+\s+(?:the|its|their)\s+\w", re.I)


@dataclass
class Group:
    """The steps one task became: ``ids`` are the task's main steps (what later tasks read)."""

    task: Task
    tool: ToolSpec
    ids: list[str] = field(default_factory=list)
    all_ids: list[str] = field(default_factory=list)
    pre: list[str] = field(default_factory=list)  # reads and fetches made for the task
    consumer: bool = False

    @property
    def is_wait(self) -> bool:
        return is_wait(self.tool)


# A condition on a named field of earlier data: "its phase is 'done'", "the state field is
# 'failed'", "beta is true" (not the HTTP status: that is the response's own).
_FIELD_CONDITION = re.compile(
    r"^(?:(?:its|their|the)\s+)?(?P<f>[A-Za-z_][\w.]*)(?P<said>\s+(?:field|key|property|value))?\s+"
    r"(?:is|are|equals?|==|!=|>|<|isn't|exceeds|goes|drops|falls)\b",
    re.I,
)
_NOT_A_FIELD = frozenset(
    "status code http response answer page site server request call it this that they there "
    "he she".split()
)


class Builder:
    """Builds one plan's steps and explanations from matched tasks."""

    def __init__(self, matcher: Matcher, inputs: dict[str, Any]) -> None:
        self.matcher = matcher
        self.catalogue: Catalogue = matcher.catalogue
        self.inputs = inputs
        self.groups: list[Group] = []
        self.steps: list[dict[str, Any]] = []
        self.notes: list[StepExplanation] = []
        self.used_ids: set[str] = set()

    # --- one task ---------------------------------------------------------------------------------

    def add(self, task: Task, match: Match) -> None:
        tool = match.tool
        group = Group(task, tool)
        order = self._order_deps(task, tool)
        pre, path, dest = self._implied_sources(task, tool, order)
        earlier = [] if pre else self._earlier_sources(task, tool)
        if not pre and not earlier and self._needs_template(task, tool):
            pre = [self._template(task, order)]
        elif not pre and not earlier and self._needs_author(task, tool):
            pre = [self._author(task, order)]
        gathered = not pre and not earlier and self._needs_gathering(task, tool)
        if gathered:
            pre = self._gather(task, order)  # "summarise the news about a, b and c"
        group.consumer = bool(earlier)
        if earlier and self._needs_pick(task, tool):
            earlier = [self._pick(task, earlier, order)]
        elif earlier and self._needs_digest(task, tool, earlier):
            earlier = [self._digest(task, earlier, order)]
        sources = pre or earlier
        why = self._why(match, earlier)
        if task.is_condition:
            why += "; its result decides the 'if' that follows"
        fields = w.named_fields(task.text) if is_query(tool) and sources else []
        if len(fields) > 1:
            # "I only need the status and the total": one pick per field named.
            for name in fields:
                need = Need(f"the {name} field", None, sources, self.inputs, path)
                group.ids.append(self._step(task, tool, need, order, why, f"pick_{name}"))
        elif len(sources) > 1 and self._one_each(task, pre) and "prompt" in props(tool):
            # "summarise a and b separately": one step per source.
            named = w.files(task.text) + w.urls(task.text)
            for k, source in enumerate(sources):
                verb = w.lead_verb(task.text) or tool.name.split(".")[-1]
                # each step is told of its own source when the task listed them
                text = (
                    f"{w.sentence_case(verb)} {named[k]}"
                    if len(named) == len(sources)
                    else task.text
                )
                need = Need(text, None, [source], self.inputs, path)
                base = f"{verb}_{source[0].split('_', 1)[-1]}"
                group.ids.append(self._step(task, tool, need, order, why, base))
        elif not sources and self._digest_of_items(task, tool):
            # "compare the share prices of IBM and ORCL": one call per item, then the comparison
            author = self.matcher.roles.author
            assert author is not None
            calls = [
                (
                    self._step(
                        task, tool, Need(text, item, [], self.inputs, item_path), order, why
                    ),
                    tool,
                )
                for text, item, item_path in self._fan_out(task, tool, lists=True)
            ]
            verb = w.lead_verb(task.text) or "compare"
            note = f"the task {verb}s what the {tool.name} steps return: {author.name} does it"
            need = Need(task.text, None, calls, self.inputs)
            group.ids.append(self._step(task, author, need, [], note, verb))
            pre = calls
        elif sources and not gathered and self._fans_out_over_sources(task, tool):
            # "translate notes.md into italian and polish": one step per item, each reading it.
            for each in task.items:
                need = Need(with_item(task, each), each, sources, self.inputs, path)
                group.ids.append(self._step(task, tool, need, order, why))
        elif sources or tool.name == (self.matcher.roles.writer and self.matcher.roles.writer.name):
            group.ids.append(
                self._step(
                    task, tool, Need(task.text, None, sources, self.inputs, path), order, why
                )
            )
        else:
            for text, item, item_path in self._fan_out(task, tool):
                need = Need(text, item, [], self.inputs, item_path or path)
                group.ids.append(self._step(task, tool, need, order, why))
        group.pre = pre_ids(pre)
        group.all_ids = [*group.pre, *group.ids]
        self._keep_only(task, tool, group)
        if dest is not None:
            group.ids = [self._save(task, group.ids, dest)]
            group.all_ids.append(group.ids[0])
        self._gate(task, group)
        self._policies(task, group)
        self.groups.append(group)

    def _implied_sources(
        self, task: Task, tool: ToolSpec, order: list[str]
    ) -> tuple[list[Source], str | None, str | None]:
        """Reads/fetches the task needs first, the file its tool takes, a file to save to after."""
        roles = self.matcher.roles
        names = w.files(task.text)
        dest = w.destination(task.text)
        pre: list[Source] = []
        path: str | None = None
        if file_field(tool) and not names and w.refers_back(task.text):
            names = self._previous_files()  # "read todo.md, then delete it": the same file
        if file_field(tool) and tool.side_effect != "read":
            path = dest or (names[-1] if names else None)
            reads = [n for n in names if n != path] if tool is roles.writer else []
            dest = None
        elif file_field(tool):
            reads, dest = [], None
            path = names[0] if names and not w.files(task.text) else None
        else:
            reads = [n for n in names if n != dest]
        for name in reads:
            if roles.reader is not None:
                pre.append(self._read(task, name, order))
        if not url_field(tool) and roles.fetcher is not None and not w.sends(task.text):
            for url in w.urls(task.text):
                pre.append(self._fetch(task, url, order))
        if dest is not None and roles.writer is None:
            dest = None
        return pre, path, dest

    def _previous_files(self) -> list[str]:
        """The files the previous task's steps named."""
        if not self.groups:
            return []
        steps = [s for s in self.steps if s["id"] in self.groups[-1].all_ids]
        found = [s["input"].get("path") for s in steps if isinstance(s["input"].get("path"), str)]
        return list(dict.fromkeys(p for p in found if w.FILE.fullmatch(p)))

    @staticmethod
    def _one_each(task: Task, pre: list[Source]) -> bool:
        """One step per source: "summarise a and b separately", or a text task over the files
        or URLs it names itself ("summarise notes-a.md, notes-b.md and notes-c.md"), unless it
        joins them ("compare a.md with b.md")."""
        if _EACH.search(task.text):
            return True
        own = len(w.files(task.text)) + len(w.urls(task.text))
        verb = w.lead_verb(task.text)
        return (
            verb in _ONE_EACH_VERBS
            and own > 1
            and len(pre) == own
            and not (_NO_FAN_OUT.search(task.text))
        )

    def _needs_gathering(self, task: Task, tool: ToolSpec) -> bool:
        """A summary or comparison of subjects nothing gathered ("summarise the news about
        apple, google and microsoft"): each subject is gathered first."""
        verb = w.lead_verb(task.text)
        return (
            verb in _DIGEST_VERBS
            and bool(task.items)
            and task.prep in ("about", "on", "for", "of", "regarding", "covering")
            and "prompt" in props(tool)
            and self.matcher.roles.gatherer is not None
            and not w.quoted(task.text)
            and not self.inputs
        )

    def _gather(self, task: Task, order: list[str]) -> list[Source]:
        gatherer = self.matcher.roles.gatherer
        assert gatherer is not None
        verb = w.lead_verb(task.text) or ""
        why = f"nothing gathered what the task {verb}s: {gatherer.name} gathers each subject first"
        found = []
        for item in task.items:
            text = re.sub(rf"^{verb}\b", "gather", with_item(task, item), flags=re.I)
            sid = self._step(task, gatherer, Need(text, item, inputs=self.inputs), order, why)
            found.append((sid, gatherer))
        return found

    def _needs_digest(self, task: Task, tool: ToolSpec, earlier: list[Source]) -> bool:
        """A send of "a summary" of results that are not text yet ("… then post a summary to
        #travel"): the summary is written first."""
        made = any("prompt" in props(spec) or is_template(spec) for _, spec in earlier)
        return (
            w.sends(task.text)
            and bool(_A_DIGEST.search(task.text))
            and self.matcher.roles.author is not None
            and "prompt" not in props(tool)
            and not made
        )

    def _digest(self, task: Task, earlier: list[Source], order: list[str]) -> Source:
        author = self.matcher.roles.author
        assert author is not None
        kind = _A_DIGEST.search(task.text)
        what = kind[1].lower() if kind else "summary"
        why = f"the task sends {what} of the earlier results: {author.name} writes it first"
        need = Need(f"Write a short {what} of the results", None, earlier, self.inputs)
        return self._step(task, author, need, order, why, f"write_{what}"), author

    def _needs_pick(self, task: Task, tool: ToolSpec) -> bool:
        """A write of a named field of earlier data ("save the title field to title.txt")."""
        roles = self.matcher.roles
        return tool is roles.writer and roles.query is not None and bool(w.json_path(task.text))

    def _pick(self, task: Task, earlier: list[Source], order: list[str]) -> Source:
        query = self.matcher.roles.query
        assert query is not None
        path = w.json_path(task.text)
        why = f"the task names the field {path!r}: {query.name} picks it out before the write"
        need = Need(task.text, None, earlier, self.inputs)
        return self._step(task, query, need, order, why, f"pick_{path}"), query

    def _keep_only(self, task: Task, tool: ToolSpec, group: Group) -> None:
        """ "fetch https://api…/user and give me just the email": a fetch or a read of JSON
        data that keeps only the fields named gets a pick per field; what the task gives back
        is the picks."""
        query = self.matcher.roles.query
        fields = w.only_fields(task.text)
        reads = tool is self.matcher.roles.fetcher or tool is self.matcher.roles.reader
        if query is None or not fields or not reads or w.sends(task.text):
            return
        if not any(w.json_like(x) for x in w.urls(task.text) + w.files(task.text)):
            return  # a web page or a text file: its fields are not JSON paths
        sources = [(sid, tool) for sid in group.ids]
        why = f"the task keeps only {', '.join(fields)}: {query.name} picks each out"
        picks = [
            self._step(
                task, query, Need(f"the {name} field", None, sources), [], why, f"pick_{name}"
            )
            for name in fields
        ]
        group.ids = picks
        group.all_ids += picks

    @staticmethod
    def _fans_out_over_sources(task: Task, tool: ToolSpec) -> bool:
        """ "translate notes.md into italian and polish": a text task over a list ("and", not
        "or": "spam or not spam" is a choice) makes one step per item."""
        listed = bool(task.items) and not re.search(r"\bor\b", task.enum_text, re.I)
        return listed and "prompt" in props(tool) and not _NO_FAN_OUT.search(task.text)

    def _needs_template(self, task: Task, tool: ToolSpec) -> bool:
        """A write of a quoted template with its values ("write 'Hi {who}' with who=Al to
        hi.txt"): the template is filled first."""
        roles = self.matcher.roles
        templated = [q for q in w.quoted(task.text) if w.PLACEHOLDER_NAME.search(q)]
        if roles.template is None or not templated:
            return False
        if tool is roles.writer:
            return True
        # a send of a template with its values given ("with id=7 post 'ticket {id} closed' to
        # https://…"): the message sent is the filled one
        names = {n for q in templated for n in w.PLACEHOLDER_NAME.findall(q)}
        given = set(w.pairs(task.text)) | set(self.inputs)
        return bool(url_field(tool)) and w.sends(task.text) and names <= given

    def _template(self, task: Task, order: list[str]) -> Source:
        template = self.matcher.roles.template
        assert template is not None
        why = f"the text to write has {{placeholders}}: {template.name} fills them first"
        sid = self._step(task, template, Need(task.text, inputs=self.inputs), order, why, "fill")
        return sid, template

    def _needs_author(self, task: Task, tool: ToolSpec) -> bool:
        """A write that names no content ("write a poem about rain to rain.txt")."""
        roles = self.matcher.roles
        return tool is roles.writer and roles.author is not None and not w.quoted(task.text)

    def _author(self, task: Task, order: list[str]) -> Source:
        author = self.matcher.roles.author
        assert author is not None
        dest = w.destination(task.text)
        prompt = (
            re.sub(rf"\s+(?:to|into|as)\s+(?:the\s+)?(?:file\s+)?{re.escape(dest)}", "", task.text)
            if dest
            else task.text
        )
        why = f"the task names no content to write: {author.name} writes it first"
        sid = self._step(task, author, Need(prompt, inputs=self.inputs), order, why, "compose")
        return sid, author

    def _read(self, task: Task, name: str, order: list[str]) -> Source:
        reader = self.matcher.reader_for(name)
        assert reader is not None
        why = f"the task names the file {name!r}: {reader.name} reads it for the next step"
        sid = self._step(task, reader, Need(f"read {name}", path=name), order, why, f"read_{name}")
        return sid, reader

    def _fetch(self, task: Task, url: str, order: list[str]) -> Source:
        fetcher = self.matcher.roles.fetcher
        assert fetcher is not None
        why = f"the task names the URL {url}: {fetcher.name} fetches it for the next step"
        sid = self._step(
            task, fetcher, Need(f"fetch {url}", url=url), order, why, f"fetch_{w.host(url)}"
        )
        return sid, fetcher

    def _save(self, task: Task, ids: list[str], dest: str) -> str:
        writer = self.matcher.roles.writer
        assert writer is not None
        sources = [(sid, self._spec_of(sid)) for sid in ids]
        why = f"the task says to put the result in {dest!r}: {writer.name} writes it"
        need = Need(f"save to {dest}", None, sources, self.inputs, dest)
        return self._step(task, writer, need, [], why, f"save_{dest}")

    def _gate(self, task: Task, group: Group) -> None:
        """A condition ("if …") and an approval ("once ann approves") apply to the task's steps."""
        first = [s for s in self.steps if s["id"] in group.all_ids]
        if task.condition is not None and task.condition < len(self.groups):
            check = self.groups[task.condition]
            about = task.condition_text or check.task.text
            check_id = self._field_check(check, about) or check.ids[-1]
            expr, reading = when(check_id, self._spec_of(check_id), about, task.negated)
            self._accept_errors(check_id, expr)
            for step in first:
                if step["id"] != check_id and "when" not in step:
                    # a step that reads the checked step's output is gated by it all the same
                    step["when"] = expr
                    if check_id not in step["depends_on"]:
                        step["depends_on"].append(check_id)
                    self._note(step["id"]).why += f"; runs only if {reading} (step {check_id})"
        if task.approval is not None:
            who = ", ".join(task.approval) or "a person allowed to approve"
            for step in [s for s in self.steps if s["id"] in group.ids]:
                step.update(approval(task.approval))
                self._note(step["id"]).why += f"; waits for approval by {who}"

    def _policies(self, task: Task, group: Group) -> None:
        """Retries and a timeout said in words apply to the steps that do what the task asks."""
        fields = task.policies.step_fields()
        if not fields:
            return
        main = [s for s in self.steps if s["id"] in group.all_ids and s["id"] not in group.pre]
        for step in main:
            step.update(fields)
            self._note(step["id"]).why += f"; {task.policies.describe()} (said in the request)"

    def _field_check(self, check: Group, about: str) -> str | None:
        """ "fetch https://api…/build and only if its result is 'success' write …": a
        condition on a named field of the JSON data the checked step fetched or read tests
        that field, picked out first (not the whole response)."""
        query = self.matcher.roles.query
        found = _FIELD_CONDITION.match(about.strip())
        if query is None or found is None or found["f"].lower() in _NOT_A_FIELD:
            return None
        check_id = check.ids[-1]
        data = w.urls(check.task.text) + w.files(check.task.text)
        json_data = any(w.json_like(x) for x in data) or bool(found["said"])
        reads = check.tool is self.matcher.roles.fetcher or check.tool is self.matcher.roles.reader
        if not (reads and json_data) or is_query(check.tool):
            return None
        why = f"the condition tests the {found['f']!r} field: {query.name} picks it out first"
        need = Need(f"the {found['f']} field", None, [(check_id, check.tool)], self.inputs)
        pick = self._step(check.task, query, need, [], why, f"pick_{found['f']}")
        # listed right after the step it picks from (the plan reads in order)
        step = self.steps.pop()
        self.steps.insert(
            next(i for i, s in enumerate(self.steps) if s["id"] == check_id) + 1, step
        )
        check.ids.append(pick)
        check.all_ids.append(pick)
        return pick

    def _accept_errors(self, check_id: str, expr: str) -> None:
        """A check of an HTTP status must see error statuses, not fail on them."""
        step = next(s for s in self.steps if s["id"] == check_id)
        spec = self._spec_of(check_id)
        if ".status}" in expr and "expect_status" in spec.input_schema.get("properties", {}):
            step["input"]["expect_status"] = HTTP_STATUSES

    # --- sources and order ------------------------------------------------------------------------

    def _earlier_sources(self, task: Task, tool: ToolSpec) -> list[Source]:
        """Earlier outputs the task reads, when it speaks of them or its tool consumes data."""
        if not self.groups or (task.parallel and self._same_parallel_group()):
            return []
        if w.urls(task.text) and not w.sends(task.text):
            return []
        if (file_field(tool) and tool.side_effect == "read") or is_wait(tool):
            return []
        own_text = bool(w.quoted(task.text))  # "write 'ok' to status.txt" brings its content
        consumes = is_query(tool) or (tool is self.matcher.roles.writer and not own_text)
        text_tool = "prompt" in tool.input_schema.get("properties", {}) or is_template(tool)
        if not (
            w.names_earlier(task.text)
            or consumes
            or (task.ordered and text_tool)
            or (task.joined and text_tool and not self._previous_is_text())
            or (w.sends(task.text) and bool(url_field(tool)))
            or (w.sends(task.text) and task.ordered and not own_text)  # "…, then post a summary"
            # "look up acme and post the owner in #sales": what is sent is something known
            or (w.sends(task.text) and task.joined and not own_text and _DEFINITE.match(task.text))
        ):
            return []
        return [(sid, self._spec_of(sid)) for sid in self._previous_outputs(task)]

    def _previous_is_text(self) -> bool:
        """Did the previous task write text (a poem after a poem is not about it)?"""
        tool = self.groups[-1].tool
        return "prompt" in tool.input_schema.get("properties", {}) or is_template(tool)

    def _same_parallel_group(self) -> bool:
        return bool(self.groups) and self.groups[-1].task.parallel

    def _previous_outputs(self, task: Task) -> list[str]:
        """The previous task's steps, or the run of independent tasks before it."""
        found: list[str] = []
        for group in reversed(self.groups):
            if group.is_wait or (group.task.is_condition and task.condition is not None):
                continue
            if group.task.condition == task.condition and group.task.negated != task.negated:
                continue  # the other branch of the same "if" may not run
            if group.consumer and found:
                break
            found = group.ids + found
            if group.consumer or group.task.ordered or group.task.condition is not None:
                break
        return found

    def _order_deps(self, task: Task, tool: ToolSpec) -> list[str]:
        """Run-order dependencies: after "then", around a wait."""
        if not self.groups:
            return []
        previous = self.groups[-1]
        if task.condition is not None and previous.task.condition == task.condition:
            if previous.task.negated != task.negated:
                return []  # the other branch of the same "if": it may be skipped
        if task.ordered or previous.is_wait or is_wait(tool):
            return list(previous.ids)
        return []

    def _digest_of_items(self, task: Task, tool: ToolSpec) -> bool:
        """A comparison or summary over listed items of a tool that makes no text."""
        return (
            w.lead_verb(task.text) in _DIGEST_VERBS
            and len(task.items) > 1
            and "prompt" not in props(tool)
            and not is_template(tool)
            and self.matcher.roles.author is not None
            and not file_field(tool)
            and not url_field(tool)
        )

    def _fan_out(
        self, task: Task, tool: ToolSpec, lists: bool = False
    ) -> list[tuple[str, str | None, str | None]]:
        """One (text, item, file) per enumerated item, URL or file, or the task itself."""
        found = w.urls(task.text)
        if url_field(tool) and len(found) > 1:
            return [(task.text, u, None) for u in found]
        names = w.files(task.text)
        if file_field(tool) and len(names) > 1 and tool is not self.matcher.roles.writer:
            return [(task.text, None, n) for n in names]
        named = (file_field(tool) and names) or (url_field(tool) and found)
        if (
            not task.items
            and not named
            and (values := listed_values(tool, cased_names(tool, task.text)))
        ):
            return [(task.text, value, None) for value in values]  # "quote AMD and INTC"
        if task.items and (lists or not _NO_FAN_OUT.search(task.text)) and not named:
            # (a read of manifest.json "about the name and the version" reads it once)
            return [(with_item(task, item), item, None) for item in task.items]
        return [(task.text, None, None)]

    # --- steps ------------------------------------------------------------------------------------

    def _step(
        self,
        task: Task,
        tool: ToolSpec,
        need: Need,
        order: list[str],
        why: str,
        base: str | None = None,
    ) -> str:
        step_id = self._new_id(base or step_slug(need.text, tool, need.item or need.path))
        step: dict[str, Any] = {
            "id": step_id,
            "tool": tool.name,
            "input": fill(tool, need),
            "depends_on": list(dict.fromkeys([s for s, _ in need.sources] + order)),
            "description": w.sentence_case(need.text),
        }
        if is_wait(tool):
            # The default step timeout is 60 s; a longer wait must not time out.
            step["timeout"] = max(60.0, float(step["input"].get("seconds", 0)) + 30)
        self.steps.append(step)
        words = self.matcher.index.matched_words(tool, task.core) if base is None else []
        self.notes.append(StepExplanation(step_id, tool.name, task.text, words, why))
        return step_id

    def _why(self, match: Match, earlier: list[Source]) -> str:
        why = f"{describe_words(match.words)} matched {match.tool.name}"
        if match.cue:
            why += f" ({match.cue})" if match.words else f"; {match.cue}"
        if earlier:
            why += "; reads " + ", ".join(sid for sid, _ in earlier) + " (earlier results)"
        return why

    def _note(self, step_id: str) -> StepExplanation:
        return next(n for n in self.notes if n.step == step_id)

    def _spec_of(self, step_id: str) -> ToolSpec:
        tool = next(s["tool"] for s in self.steps if s["id"] == step_id)
        return self.catalogue.get(tool)  # type: ignore[return-value]

    def _new_id(self, base: str) -> str:
        base = w.slug(base)[:40].strip("_") or "step"
        base = base if re.match(r"[A-Za-z_]", base) else f"step_{base}"
        step_id, n = base, 2
        while step_id in self.used_ids:
            step_id, n = f"{base}_{n}", n + 1
        self.used_ids.add(step_id)
        return step_id

    def outputs(self) -> dict[str, str]:
        """What the plan gives back (see ``naming.plan_outputs``)."""
        return plan_outputs(self.steps, self.catalogue)


# Statuses a status check accepts as answers (the HTTP tool fails on others, e.g. 5xx, by default).
HTTP_STATUSES = [200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 410, 429]
HTTP_STATUSES += [500, 501, 502, 503, 504]


def pre_ids(pre: list[Source]) -> list[str]:
    return [sid for sid, _ in pre]
