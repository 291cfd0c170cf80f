"""How often the stream delivered a message, read off its reply subject (the consumers' and the
tool workers' one reading: a worker fails a step lost too often)."""

from __future__ import annotations

import pytest
from baton_common.consumer import deliveries_of, stream_sequence
from nats.aio.msg import Msg

# The reply subjects JetStream gives a pulled message: the old layout (9 tokens) and the one
# with a domain and an account hash (12 tokens, a random token last).
OLD = "$JS.ACK.BATON.workers.3.120.77.1700000000000000000.0"
NEW = "$JS.ACK.hub.acchash.BATON.workers.4.121.78.1700000000000000000.0.tok"


@pytest.mark.parametrize(("reply", "count", "seq"), [(OLD, 3, 120), (NEW, 4, 121)])
def test_deliveries_and_sequence_are_what_the_librarys_parse_says(
    reply: str, count: int, seq: int
) -> None:
    msg = Msg(None, subject="s", reply=reply, data=b"")  # type: ignore[arg-type]
    assert deliveries_of(msg) == count == msg.metadata.num_delivered
    assert stream_sequence(msg) == seq == msg.metadata.sequence.stream


def test_a_message_without_a_stream_reply_counts_as_delivered_once() -> None:
    assert deliveries_of(Msg(None, subject="s", reply="_INBOX.x", data=b"")) == 1  # type: ignore[arg-type]
