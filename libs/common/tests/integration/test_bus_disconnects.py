"""A dropped NATS connection is logged, and so is its return; a service's own close is not a
drop (nats-py calls the same hook on close: a clean stop must leave no warning in the logs)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from baton_common.bus import Bus
from baton_common.embedded import NatsServer
from baton_common.settings import Settings
from baton_common.testing import until

pytestmark = pytest.mark.integration


async def test_a_drop_is_logged_and_a_close_is_not(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = NatsServer(tmp_path / "nats").start()
    port = server.port
    bus = await Bus.connect(settings.model_copy(update={"nats_url": server.url}), "test")
    caplog.set_level(logging.WARNING, logger="baton_common.bus")
    try:
        server.stop()
        await until(lambda: "disconnected" in caplog.text, "the drop logged")
        server = NatsServer(tmp_path / "nats", port=port).start()
        await until(lambda: "connected again" in caplog.text, "the return logged")
    finally:
        caplog.clear()
        await bus.close()
        server.stop()
    assert not [r for r in caplog.records if "disconnected" in r.getMessage()]
