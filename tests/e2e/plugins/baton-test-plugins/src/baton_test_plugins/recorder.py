"""A plugin that writes each hook call it gets as a JSON line to $BATON_TEST_HOOK_LOG."""

import json
import os
from typing import Any

from baton_common.plugins import hookimpl

CAPABILITIES = ("files",)


def _write(**entry: Any) -> None:
    with open(os.environ["BATON_TEST_HOOK_LOG"], "a") as out:
        out.write(json.dumps(entry, default=str) + "\n")


@hookimpl
def before_step(step: dict[str, Any], log: Any) -> None:
    _write(hook="before_step", execution_id=step["execution_id"], step_id=step["step_id"])
    log.info("recorder saw %s start", step["step_id"])  # the step's live log


@hookimpl
def after_step(step: dict[str, Any], output: Any) -> None:
    _write(hook="after_step", execution_id=step["execution_id"], output=output)


@hookimpl
def on_step_failure(step: dict[str, Any], error: str, log: Any) -> None:
    _write(hook="on_step_failure", execution_id=step["execution_id"], error=error)
    log.warning("recorder saw %s fail", step["step_id"])


@hookimpl
def on_execution_end(execution_id: str, status: str) -> None:
    _write(hook="on_execution_end", execution_id=execution_id, status=status)
