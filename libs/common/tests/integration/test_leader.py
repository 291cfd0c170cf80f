import uuid

import pytest
from baton_common.leader import Leadership

pytestmark = pytest.mark.integration


def test_one_leader_at_a_time_and_the_standby_takes_over(database_url: str) -> None:
    name = f"test:{uuid.uuid4()}"
    first, second = Leadership(database_url, name), Leadership(database_url, name)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert Leadership(database_url, f"{name}:other").try_acquire()  # another name, another lock
    first.release()  # the leader's session ends (a crash ends it the same way)
    assert second.try_acquire()
    second.release()
