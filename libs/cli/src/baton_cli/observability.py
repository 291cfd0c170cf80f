"""The observability verbs: ``baton logs``, ``baton trace``, ``baton stats``."""

from __future__ import annotations

import argparse
from typing import Any

from baton_cli.logs import add_log_commands
from baton_cli.stats import add_stats_commands
from baton_cli.trace import add_trace_commands


def add_observability_commands(sub: Any) -> list[argparse.ArgumentParser]:
    """Register the verbs; returns their parsers (they take ``--url``)."""
    return [*add_log_commands(sub), *add_trace_commands(sub), *add_stats_commands(sub)]
