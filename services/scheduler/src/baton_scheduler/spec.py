"""What a schedule and a trigger say, validated; and when a schedule's ticks fall.

Cron is croniter's (5 fields, or 6 with seconds first: ``*/5 * * * * *``), computed in the
schedule's IANA zone (``zoneinfo``). Daylight saving, documented in docs/schedules.md:
- spring forward: a wall time that does not exist that day (02:30 in Europe/Berlin on the last
  Sunday of March) runs once, at the first instant after the gap (03:00);
- fall back: a wall time that happens twice runs once, at its first occurrence, for a cron with
  a fixed hour; a cron whose hour is ``*`` or ``*/n`` keeps running through both hours (it is
  about elapsed time: every 30 minutes stays every 30 minutes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.contracts import registry
from baton_common.contracts.plans import parse_plan_ref
from baton_common.plans import REF, PlanInvalid, validate_plan
from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_TICKS = 1000  # ticks enumerated at once (one pass, one backfill)
MIN_EVERY_S = 1.0  # cron's own resolution: finer would only enumerate more ticks per pass
MAX_EVERY_S = 10 * 366 * 86400  # beyond, a tick is past any date Python can hold
SCHEDULE_REFS = {"id", "name", "fired_at", "scheduled_for"}
# Events a trigger can listen to: what the scheduler's consumer follows. Per-step events are
# left out on purpose (they are the bulk of the traffic).
TRIGGERABLE = (
    "execution.requested",
    "execution.started",
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
    "plan.proposed",
    "plan.failed",
    "approval.",
    "webhook.",
    "calendar.",
)


class SpecInvalid(ValueError):
    """A definition that cannot be stored; the message says why (a 422)."""


class Action(BaseModel):
    """What to start: a request in words, or a plan, with inputs."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    request: str | None = Field(None, max_length=20_000)
    plan: dict[str, Any] | None = None
    plan_ref: str | dict[str, Any] | None = None  # a saved plan: "name", "name@3", {name, version?}
    inputs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_action(self) -> Action:
        if self.plan_ref is not None:
            self.plan_ref = parse_plan_ref(self.plan_ref)
        given = [self.request is not None and bool(self.request.strip())]
        if sum([*given, self.plan is not None, self.plan_ref is not None]) != 1:
            raise ValueError("give exactly one of 'request' (words), 'plan' or 'plan_ref'")
        return self


class ScheduleSpec(Action):
    """``POST /v1/schedules``: when, in which zone, what, and the policies."""

    cron: str | None = Field(None, max_length=200)
    every_seconds: float | None = None
    at: datetime | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = Field(None, ge=1)
    overlap: Literal["skip", "buffer_one", "allow_all", "cancel_previous"] = "skip"
    catchup: Literal["all", "latest", "none"] = "latest"
    catchup_window_seconds: float = Field(3600, ge=0, le=366 * 86400)
    jitter_seconds: float = Field(0, ge=0, le=86400)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)"
            ) from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = value.split()
        if len(fields) not in (5, 6) or not croniter.is_valid(
            value, second_at_beginning=len(fields) == 6
        ):
            raise ValueError(
                f"invalid cron {value!r}: 5 fields (minute hour day month weekday), or 6 with "
                "seconds first"
            )
        return " ".join(fields)

    @field_validator("every_seconds")
    @classmethod
    def _interval(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("every_seconds must be more than 0")
        if value is not None and not MIN_EVERY_S <= value <= MAX_EVERY_S:
            raise ValueError(
                f"every_seconds must be between {MIN_EVERY_S:g} and {MAX_EVERY_S} (ten years)"
            )
        return value

    @model_validator(mode="after")
    def _when(self) -> ScheduleSpec:
        given = [n for n in ("cron", "every_seconds", "at") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'cron', 'every_seconds' or 'at'")
        zone = self.zone
        self.at, self.start_at, self.end_at = (
            _aware(v, zone) for v in (self.at, self.start_at, self.end_at)
        )
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    # --- when ticks fall ------------------------------------------------------------------------

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """Tick times (UTC) strictly after ``after``, in order, within start/end."""
        after = max(after, self.start_at - timedelta(microseconds=1)) if self.start_at else after
        for tick in self._raw_ticks(after):
            if self.end_at is not None and tick > self.end_at:
                return
            yield tick

    def _raw_ticks(self, after: datetime) -> Iterator[datetime]:
        if self.at is not None:
            if self.at > after:
                yield self.at.astimezone(UTC)
            return
        if self.every_seconds is not None:
            yield from _interval_ticks(self.start_at, self.every_seconds, after)
            return
        assert self.cron is not None
        yield from _cron_ticks(self.cron, self.zone, after)

    def next_times(self, after: datetime, count: int) -> list[datetime]:
        found: list[datetime] = []
        for tick in self.ticks_after(after):
            found.append(tick)
            if len(found) >= count:
                break
        return found

    def jitter(self, schedule_id: str, tick: datetime) -> timedelta:
        """A delay in [0, jitter_seconds) fixed by the tick: every replica and restart agree."""
        if not self.jitter_seconds:
            return timedelta(0)
        digest = hashlib.sha256(f"{schedule_id}:{tick.isoformat()}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return timedelta(seconds=self.jitter_seconds * fraction)


def _aware(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """A naive time is the schedule's wall time; every time is kept in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _interval_ticks(anchor: datetime | None, every: float, after: datetime) -> Iterator[datetime]:
    """``anchor + k * every``; without a start date, from the epoch (a grid every replica and
    restart agrees on)."""
    base = anchor or datetime(2000, 1, 1, tzinfo=UTC)
    step = timedelta(seconds=every)
    k = max(0, int((after - base) / step))
    while True:
        tick = base + k * step
        if tick > after:
            yield tick
        k += 1


def _cron_ticks(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    fields = expr.split()
    seconds = len(fields) == 6
    hour = fields[2 if seconds else 1]
    elapsed = hour.startswith("*")  # hourly-like crons run through a repeated hour
    it = croniter(expr, after.astimezone(zone), second_at_beginning=seconds)
    while True:
        tick = it.get_next(datetime).astimezone(UTC).astimezone(zone)
        if not elapsed and _repeated_wall_time(tick):
            continue  # fall back: the second 02:30 of the night is not another day's run
        yield tick.astimezone(UTC)


def _repeated_wall_time(t: datetime) -> bool:
    """Is ``t`` the second occurrence of a wall time that happens twice (fall back)?"""
    return t.fold == 1 and t.replace(fold=0).utcoffset() != t.utcoffset()


# --- triggers -------------------------------------------------------------------------------------


class Condition(BaseModel):
    """One test on the event: ``path`` (``payload.error``, ``$.execution.plan_name``,
    ``payload.items[0]``) equals, contains, or exists."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=500)
    equals: Any = None
    contains: Any = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [n for n in ("equals", "contains", "exists") if n in self.model_fields_set]
        if len(tests) != 1:
            raise ValueError("a condition has a 'path' and exactly one of equals, contains, exists")
        return self

    @property
    def clean_path(self) -> str:
        return self.path.removeprefix("$").removeprefix(".")


class EventFilter(BaseModel):
    """Which events: a type, optionally the execution's plan name, and conditions."""

    model_config = ConfigDict(extra="forbid")
    type: str
    plan: str | None = Field(None, description="the plan name of the execution it is about")
    where: list[Condition] = Field(default_factory=list, max_length=20)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        known = registry().types()
        if value not in known:
            raise ValueError(f"unknown event type {value!r}")
        if not value.startswith(TRIGGERABLE):
            raise ValueError(
                f"event type {value!r} cannot start a trigger; these can: "
                + ", ".join(sorted(t for t in known if t.startswith(TRIGGERABLE)))
            )
        return value

    @property
    def needs_execution(self) -> bool:
        return self.plan is not None or any(
            c.clean_path.startswith("execution") for c in self.where
        )


class TriggerSpec(Action):
    """``POST /v1/triggers``: an event filter and what to start."""

    filter: EventFilter


def parse(model: type[Action], body: dict[str, Any]) -> Any:
    """Validate a definition, plan included; ``SpecInvalid`` names every problem."""
    try:
        spec = model.model_validate(body)
    except ValidationError as exc:
        raise SpecInvalid(_brief(exc)) from None
    if spec.plan is not None:
        try:
            plan = validate_plan(spec.plan, DEFAULT_CATALOGUE, spec.inputs)
        except PlanInvalid as exc:
            raise SpecInvalid(f"plan invalid: {exc}") from None
        spec.plan = plan.model_dump(mode="json", exclude_defaults=True)
    if isinstance(spec, ScheduleSpec):
        _check_schedule_refs(spec.inputs)
        _check_fires(spec)
    return spec


def _check_fires(spec: ScheduleSpec) -> None:
    """A cron that names no real day (``0 0 31 2 *``) is refused, not found out at a tick."""
    if spec.cron is None:
        return
    try:
        spec.next_times(datetime.now(UTC), 1)
    except CroniterBadDateError:
        raise SpecInvalid(f"cron {spec.cron!r} never fires (no such date)") from None


def _check_schedule_refs(inputs: dict[str, Any]) -> None:
    for value in _strings(inputs):
        for ref in REF.findall(value):
            root, _, rest = ref.partition(".")
            if root != "schedule" or rest not in SCHEDULE_REFS:
                raise SpecInvalid(
                    f"inputs: ${{{ref}}} is not known; a schedule's inputs may use "
                    + ", ".join(f"${{schedule.{r}}}" for r in sorted(SCHEDULE_REFS))
                )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _brief(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)
