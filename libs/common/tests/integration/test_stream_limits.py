"""The event stream's limits: set when it is made, and brought to the settings on an existing one."""

from __future__ import annotations

import nats
import pytest
from baton_common.bus import Bus
from baton_common.settings import Settings
from nats.js import api

pytestmark = pytest.mark.integration


async def test_a_stream_made_without_limits_gets_them_at_the_next_start(settings: Settings) -> None:
    nc = await nats.connect(settings.nats_url)
    js = nc.jetstream()
    old = api.StreamConfig(  # as releases before the limits made it
        name=settings.stream,
        subjects=[f"{settings.subject_root}.>"],
        storage=api.StorageType.FILE,
        duplicate_window=600.0,
        description="kept as it is",
    )
    await js.add_stream(old)
    try:
        limited = settings.model_copy(update={"stream_max_age_s": 60.0, "stream_max_bytes": 2**20})
        bus = await Bus.connect(limited, "test")
        config = (await js.stream_info(settings.stream)).config
        assert (config.max_age, config.max_bytes) == (60.0, 2**20)
        assert config.duplicate_window == 60.0  # never longer than the age, as the server wants
        assert config.description == "kept as it is"  # the rest of its configuration stays
        await bus.declare()  # again, unchanged: idempotent
        again = (await js.stream_info(settings.stream)).config
        assert (again.max_age, again.max_bytes, again.duplicate_window) == (60.0, 2**20, 60.0)
        await bus.close()
        defaults = await Bus.connect(settings, "test")  # the defaults: a week, 10 GiB
        config = (await js.stream_info(settings.stream)).config
        assert (config.max_age, config.max_bytes) == (7 * 24 * 3600.0, 10 * 1024**3)
        assert config.duplicate_window == 600.0
        await defaults.close()
    finally:
        for stream in (settings.stream, settings.dlq_stream):
            await js.delete_stream(stream)
        await nc.close()
