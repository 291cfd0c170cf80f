"""A plugin whose before_step hook never returns in time."""

import time

from baton_common.plugins import hookimpl


@hookimpl
def before_step(step: dict) -> None:
    time.sleep(30)
