"""Which just-committed events a replica may publish itself (``relay.OwnCommits``)."""

from __future__ import annotations

from uuid import UUID, uuid4

from baton_common.relay import OwnCommits
from baton_common.testing import Pinged


def _row(position: int, aggregate: UUID, version: int) -> tuple[int, bytes]:
    return position, Pinged(aggregate_id=aggregate, aggregate_version=version).to_json()


def test_an_event_goes_at_once_only_after_its_aggregates_last_one_from_here() -> None:
    own, x, y = OwnCommits(), uuid4(), uuid4()
    first = [_row(1, x, 1), _row(2, x, 2), _row(3, y, 4)]
    assert own.take(first) == first[:2]  # y's 1-3 were not committed here
    assert own.take([_row(5, y, 5)]) == []  # nor was y's 4 published here
    assert own.take([_row(7, x, 4)]) == []  # x's 3 was committed elsewhere
    assert own.take([_row(8, x, 5)]) == []  # and x stays with the log from then on


def test_after_a_failed_publish_nothing_follows_what_may_be_missing() -> None:
    own, x = OwnCommits(), uuid4()
    first = [_row(1, x, 1)]
    assert own.take(first) == first
    own.forget()  # its publish failed
    assert own.take([_row(2, x, 2)]) == []


def test_it_keeps_a_bounded_number_of_aggregates() -> None:
    own = OwnCommits(kept=2)
    a, b, c = uuid4(), uuid4(), uuid4()
    own.take([_row(1, a, 1), _row(2, b, 1), _row(3, c, 1)])
    assert own.take([_row(4, a, 2)]) == []  # a was forgotten: it goes through the log
    last = [_row(5, c, 2)]
    assert own.take(last) == last
