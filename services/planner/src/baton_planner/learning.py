"""The learning engine: what the planner learns from finished executions, and uses.

- Plan templates: a plan that worked for a request in words is kept with the request's
  embedding; a later request whose similarity passes the threshold gets that plan again, after
  ``validate_plan`` (the catalogue, the inputs and the workspace's policy may have changed).
- Tool outcomes: successes, failures and time per tool, for ``GET /v1/insights``.
- Failure patterns: a tool failing again and again with the same class of error (numbers and
  quoted values taken out) is recorded once it happened ``PATTERN_AFTER`` times. Failures that
  were retried give that tool's steps a retry policy; failures a retry cannot fix (the tool said
  so: not retried although attempts remained) make the planner put another tool first when one
  exists (``rewrite.py``), and add no retries. Insights report both.

All of it is events in the planner's store (``learning.*``), folded back in at start: a
restart, even a kill -9, keeps everything that was committed. No I/O here but the embedder.
"""

from __future__ import annotations

import copy
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid5

from baton_common import contracts as c
from baton_common.events import Event

from baton_planner.rewrite import Failing, StepCalls, rewrite_plan
from baton_planner.semantic import Embedder, LexicalIndex, as_floats, cosine, describe

PATTERN_AFTER = 3  # failures of one class before it is a pattern
# Steps get 3 attempts 0.5 s apart by default: a tool with a failure pattern gets more, slower.
ADDED_RETRY = {"max_attempts": 5, "backoff_s": 2.0}
MAX_PLANS = 10_000
SHAPES_KEPT = 1_000  # plans whose step calls executions share (Learner._remember_tools)
_NUMBER = re.compile(r"\d+(\.\d+)?")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
NS = UUID("8a1b1f0e-6c55-4f41-9d43-6f1d2f3b7a10")
# The values a request names (files, URLs, addresses, quoted text, numbers): a learned plan has its
# own baked in, so it is reused only for a request that names exactly the same ones.
_LITERAL = re.compile(
    r"'[^']*'|\"[^\"]*\"|https?://\S+|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<![\w./-])[\w./-]*\w\.\w{1,8}\b|\d+(?:[.:]\d+)*"
)


def literals(request: str) -> frozenset[str]:
    """What a request names literally, as a set (case-insensitive, no trailing punctuation)."""
    return frozenset(m.group(0).lower().rstrip(".,;:!?)") for m in _LITERAL.finditer(request))


def error_class(error: str) -> str:
    """The shape of an error message: numbers and quoted values are what varies."""
    text = _QUOTED.sub("'…'", _NUMBER.sub("#", error.strip().splitlines()[0] if error else ""))
    return text[:120]


@dataclass
class LearnedPlan:
    """A proven plan for a request of one workspace."""

    workspace: str
    request: str
    plan: dict[str, Any]
    embedder: str
    vector: list[float]
    learned: int = 1


@dataclass
class Pattern:
    """Failures of one tool with one class of error."""

    count: int = 0
    example: str = ""
    executions: list[str] = field(default_factory=list)
    reported: bool = False
    retryable: bool = True


@dataclass(frozen=True)
class Reuse:
    """A stored plan that fits a new request."""

    plan: dict[str, Any]
    score: float
    request: str
    embedder: str


class Learner:
    """The planner's memory, rebuilt from its events."""

    def __init__(self, embedder: Embedder | None, threshold: float) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.plans: OrderedDict[tuple[str, str], LearnedPlan] = OrderedDict()
        self.lexical: dict[str, tuple[LexicalIndex, list[LearnedPlan]]] = {}
        self.tools: dict[tuple[str, str], Counter[str]] = {}
        self.patterns: dict[tuple[str, str, str], Pattern] = {}
        self.step_tools: OrderedDict[UUID, StepCalls] = OrderedDict()  # execution -> its calls
        self._shared: dict[tuple[Any, ...], StepCalls] = {}  # one per plan shape (issue 32)
        self.stats = Counter[str]()  # reuse hits / misses since start

    # --- folding events (at start, and as they are made) ------------------------------------------

    def apply(self, event: Event) -> None:
        if isinstance(event, c.PlanLearned):
            key = (event.workspace_id, " ".join(event.request.lower().split()))
            found = self.plans.pop(key, None)
            plan = LearnedPlan(
                event.workspace_id, event.request, event.plan, event.embedder, event.vector,
                (found.learned + 1) if found else 1,
            )  # fmt: skip
            self.plans[key] = plan
            while len(self.plans) > MAX_PLANS:
                self.plans.popitem(last=False)
            self.lexical.pop(event.workspace_id, None)  # rebuilt on the next recall
        elif isinstance(event, c.ToolOutcomesRecorded):
            for tool, counts in event.outcomes.items():
                self.tools.setdefault((event.workspace_id, tool), Counter()).update(counts)
        elif isinstance(event, c.FailurePatternDetected):
            p = self.patterns.setdefault(
                (event.workspace_id, event.tool, event.error_class), Pattern()
            )
            p.count, p.example, p.reported = max(p.count, event.count), event.example, True
            p.retryable = event.retryable

    # --- learning from a batch of events ------------------------------------------------------------

    def observe(self, events: list[Event]) -> list[Event]:
        """Tool outcomes and failure patterns in these events, as new learning events."""
        outcomes: dict[str, dict[str, Counter[str]]] = {}
        new: list[Event] = []
        for e in events:
            if isinstance(e, c.ExecutionStarted):
                self._remember_tools(e.aggregate_id, e.plan)
                continue
            if isinstance(e, c.ExecutionSucceeded | c.ExecutionFailed | c.ExecutionCancelled):
                self.step_tools.pop(e.aggregate_id, None)  # no step of it ends any more
                continue
            if not isinstance(e, c.StepSucceeded | c.StepFailed) or e.kind != "run":
                continue
            calls = self.step_tools.get(e.aggregate_id)
            tool = calls.tool(e.step_id) if calls is not None else None
            if calls is None or tool is None:
                continue
            counts = outcomes.setdefault(e.workspace_id, {}).setdefault(tool, Counter())
            if isinstance(e, c.StepSucceeded):
                counts.update({"ok": 1, "ms": e.duration_ms, "cached": 1 if e.cached_from else 0})
            else:
                counts["failed"] += 1
                new += self._failure(e, tool, calls.not_retried(e))
                if calls.shared and e.next_variant is not None:
                    calls = self.step_tools[e.aggregate_id] = calls.own()
                calls.failed(e)  # an alternative runs next: later failures are its
        for workspace, per_tool in outcomes.items():
            event = c.ToolOutcomesRecorded(
                aggregate_id=uuid5(NS, f"outcomes:{events[0].event_id}:{workspace}"),
                aggregate_version=1,
                workspace_id=workspace,
                outcomes={t: {k: float(v) for k, v in n.items()} for t, n in per_tool.items()},
            )
            self.apply(event)
            new.append(event)
        return new

    def _remember_tools(self, execution_id: UUID, plan: dict[str, Any]) -> None:
        """The calls of its steps, one object for all executions of the same plan: 20,000
        executions waiting at gates held 20,000 copies (~14 MB of small objects)."""
        calls = StepCalls.of(plan)
        key = calls.key()
        if (shared := self._shared.get(key)) is None:
            if len(self._shared) >= SHAPES_KEPT:
                self._shared.clear()  # those in use stay shared (copied before they change)
            calls.shared = True
            shared = self._shared[key] = calls
        self.step_tools[execution_id] = shared
        while len(self.step_tools) > 20_000:
            self.step_tools.popitem(last=False)

    def _failure(self, e: c.StepFailed, tool: str, not_retried: bool) -> list[Event]:
        kind = error_class(e.error)
        p = self.patterns.setdefault((e.workspace_id, tool, kind), Pattern())
        p.count += 1
        p.example = e.error[:500]
        p.retryable = not not_retried  # the latest failure of the class says
        if str(e.aggregate_id) not in p.executions:
            p.executions = [*p.executions, str(e.aggregate_id)][-10:]
        if p.reported or p.count < PATTERN_AFTER:
            return []
        event = c.FailurePatternDetected(
            aggregate_id=uuid5(NS, f"pattern:{e.workspace_id}:{tool}:{kind}"),
            aggregate_version=1,
            workspace_id=e.workspace_id,
            tool=tool,
            error_class=kind,
            count=p.count,
            example=p.example,
            execution_ids=[UUID(x) for x in p.executions],
            advice=_advice(tool, p.retryable),
            retryable=p.retryable,
        )
        self.apply(event)
        return [event]

    async def learned(
        self, execution_id: UUID, workspace: str, request: str, plan: dict[str, Any], version: int
    ) -> c.PlanLearned:
        """The event that keeps a plan that worked (embedded now, once)."""
        vector = as_floats((await self.embedder.embed([request]))[0]) if self.embedder else []
        event = c.PlanLearned(
            aggregate_id=uuid5(NS, f"plan:{workspace}:{' '.join(request.lower().split())}"),
            aggregate_version=version,
            workspace_id=workspace,
            execution_id=execution_id,
            request=request,
            plan=plan,
            embedder=describe(self.embedder),
            vector=vector,
        )
        self.apply(event)
        return event

    def version_of(self, workspace: str, request: str) -> int:
        found = self.plans.get((workspace, " ".join(request.lower().split())))
        return found.learned + 1 if found else 1

    # --- using what was learned -------------------------------------------------------------------

    async def recall(self, workspace: str, request: str) -> Reuse | None:
        """The stored plan whose request is most similar, if it passes the threshold."""
        best = await self._best(workspace, request)
        if best is None or best[0] < self.threshold:
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        score, plan = best
        return Reuse(copy.deepcopy(plan.plan), score, plan.request, plan.embedder)

    async def _best(self, workspace: str, request: str) -> tuple[float, LearnedPlan] | None:
        """The most similar learned request that names the same values as this one (a plan
        learned for ``notes.md`` never writes ``notes.md`` for a request about ``todo.md``)."""
        mine = [p for p in self.plans.values() if p.workspace == workspace]
        names = literals(request)
        if not any(literals(p.request) == names for p in mine):
            return None
        if self.embedder is None:
            index, order = self._lexical(workspace, mine)
            scored = zip(index.scores(request), order, strict=True)
            return max(
                ((s, p) for s, p in scored if literals(p.request) == names), key=lambda x: x[0]
            )
        query = (await self.embedder.embed([request]))[0]
        same = [
            p
            for p in mine
            if p.embedder == self.embedder.name and p.vector and literals(p.request) == names
        ]
        if not same:
            return None
        return max(((cosine(query, p.vector), p) for p in same), key=lambda x: x[0])

    def _lexical(
        self, workspace: str, mine: list[LearnedPlan]
    ) -> tuple[LexicalIndex, list[LearnedPlan]]:
        if workspace not in self.lexical:
            index = LexicalIndex()
            for p in mine:
                index.add(p.request)
            self.lexical[workspace] = (index, mine)
        return self.lexical[workspace]

    def advise(self, workspace: str, plan: dict[str, Any], catalogue: Any = None) -> dict[str, Any]:
        """The plan as failure patterns here call for: another tool first where its tool fails
        in a way a retry cannot fix and one exists (the step's alternatives, else a stand-in
        from ``catalogue``); a retry policy where its failures were retried."""
        mine = [(tool, p) for (ws, tool, _k), p in self.patterns.items() if ws == workspace]
        failing = Failing(
            retried=frozenset(t for t, p in mine if p.reported and p.retryable),
            for_good=frozenset(t for t, p in mine if p.reported and not p.retryable),
        )
        if not failing:
            return plan
        return rewrite_plan(plan, failing, ADDED_RETRY, catalogue)

    def insights(self, workspace: str) -> dict[str, Any]:
        """What was learned for a workspace, for ``GET /v1/insights`` and ``baton insights``."""
        tools: list[dict[str, Any]] = []
        for (ws, tool), n in sorted(self.tools.items()):
            if ws != workspace:
                continue
            runs = n["ok"] + n["failed"]
            tools.append({
                "tool": tool, "runs": int(runs), "succeeded": int(n["ok"]),
                "failed": int(n["failed"]), "cached": int(n["cached"]),
                "success_rate": round(n["ok"] / runs, 3) if runs else None,
                "mean_ms": round(n["ms"] / n["ok"], 1) if n["ok"] else None,
            })  # fmt: skip
        tools.sort(key=lambda t: (-float(t["success_rate"] or 0), float(t["mean_ms"] or 0)))
        patterns = [
            {"tool": tool, "error_class": kind, "count": p.count, "example": p.example,
             "executions": p.executions, "retryable": p.retryable,
             "advice": _advice(tool, p.retryable)}
            for (ws, tool, kind), p in self.patterns.items() if ws == workspace and p.reported
        ]  # fmt: skip
        templates = [
            {"request": p.request, "steps": len(p.plan.get("steps", [])), "learned": p.learned,
             "embedder": p.embedder}
            for p in self.plans.values() if p.workspace == workspace
        ]  # fmt: skip
        return {
            "embedder": describe(self.embedder),
            "threshold": self.threshold,
            "plan_templates": templates[-100:],
            "plan_reuse": {"hits": self.stats["hits"], "misses": self.stats["misses"]},
            "tool_preference": tools,
            "failure_patterns": sorted(patterns, key=lambda p: -p["count"]),
        }


def _advice(tool: str, retryable: bool) -> str:
    if retryable:
        return f"steps calling {tool} get retry {ADDED_RETRY} when planned"
    return (
        f"a retry cannot fix it: steps calling {tool} are planned with another tool first when "
        "one exists (the step's alternatives, else a tool that takes the same input), "
        f"{tool} kept as the last alternative; none exists: fix the cause"
    )


LEARNING_TYPES = ("learning.plan_learned", "learning.tool_outcomes_recorded",
                  "learning.failure_pattern_detected")  # fmt: skip
