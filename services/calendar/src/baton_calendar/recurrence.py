"""What expanding a recurring event costs, bounded before the expansion starts.

``recurring-ical-events`` (through dateutil) walks a rule from its DTSTART up to the end of the
window asked about, one instance at a time (about 10 µs each). A small event can make that walk
endless: ``FREQ=SECONDLY`` is 31 million instances a year, ``FREQ=MINUTELY`` since 2020 three
million before the window even starts. So:

- an imported event may not repeat more often than hourly (``SECONDLY`` and ``MINUTELY`` are
  refused with the event's UID);
- before a query expands an event (imported or read from a server), the instances its rules walk
  through are estimated from DTSTART, FREQ, INTERVAL, UNTIL and the BY-lists that multiply them;
  an event above ``MAX_RULE_STEPS``, or a query whose events add up to more than
  ``MAX_QUERY_STEPS``, is refused (``BadInput``) rather than expanded;
- a query returns at most ``MAX_OCCURRENCES`` instances.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from typing import Any

from baton_calendar.errors import BadInput

REFUSED_FREQ = ("SECONDLY", "MINUTELY")
MAX_RULE_STEPS = 100_000  # about a second of dateutil's time
MAX_QUERY_STEPS = 1_000_000
MAX_OCCURRENCES = 20_000
_PERIOD_S = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
_DAYS_IN = {"WEEKLY": 7, "MONTHLY": 31, "YEARLY": 366}  # days a BY-day list may pick per period
_DAY_LISTS = ("BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO")


def check_importable(event: Any) -> None:
    """No rule repeating more often than hourly in an event that is to be stored."""
    for rule in _rules(event):
        freq = _freq(rule)
        if freq in REFUSED_FREQ:
            raise BadInput(
                "ics",
                f"event {str(event.get('uid'))!r} repeats {freq}: at most hourly "
                "recurrences are accepted",
            )


def steps(event: Any, until: datetime) -> int:
    """Instances the expansion of ``event`` walks through up to ``until`` (an upper bound);
    ``BadInput`` if above ``MAX_RULE_STEPS``."""
    if event.get("dtstart") is None:
        return 0  # not an event the library can expand either
    total = sum(_rule_steps(rule, _utc(event.decoded("dtstart")), until) for rule in _rules(event))
    if total > MAX_RULE_STEPS:
        raise BadInput(
            "events",
            f"event {str(event.get('uid'))!r} repeats too often to expand up to "
            f"{until.date().isoformat()} (about {total} instances from its start; at most "
            f"{MAX_RULE_STEPS})",
        )
    return total


def check_query(total_steps: int, found: int) -> None:
    """The whole query: its events' walks and the instances it returns, bounded."""
    if total_steps > MAX_QUERY_STEPS:
        raise BadInput(
            "events",
            f"these calendars' recurring events add up to about {total_steps} instances to "
            f"expand (at most {MAX_QUERY_STEPS}); ask about fewer calendars or people",
        )
    if found > MAX_OCCURRENCES:
        raise BadInput(
            "window_end",
            f"more than {MAX_OCCURRENCES} event instances in this window; narrow it",
        )


def _rule_steps(rule: Any, start: datetime, until: datetime) -> int:
    freq = _freq(rule)
    if freq not in _PERIOD_S:
        return 1  # the library refuses what it cannot read
    stop = min([until, *(_utc(u) for u in rule.get("UNTIL") or [])])
    if stop < start:
        return 1
    interval = max(1, int((rule.get("INTERVAL") or [1])[0]))
    periods = (stop - start).total_seconds() // (_PERIOD_S[freq] * interval) + 1
    return int(periods * _per_period(rule, freq))


def _per_period(rule: Any, freq: str) -> int:
    """Instances one period can hold: the time lists multiply, and a day list picks up to the
    period's days (conservative: a filter counted as an expansion only overestimates)."""
    times = [len(rule.get(k) or [None]) for k in ("BYHOUR", "BYMINUTE", "BYSECOND")]
    days = _DAYS_IN.get(freq, 1) if any(rule.get(k) for k in _DAY_LISTS) else 1
    if freq == "YEARLY" and days == 1:
        days = len(rule.get("BYMONTH") or [None])
    return math.prod(times) * days


def _rules(event: Any) -> list[Any]:
    rules = event.get("rrule")
    if rules is None:
        return []
    return rules if isinstance(rules, list) else [rules]


def _freq(rule: Any) -> str:
    return str((rule.get("FREQ") or [""])[0]).upper()


def _utc(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), UTC)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
