"""A service's start, watched (CI: an executor logged its tool scan, never "ready", and ignored
SIGTERM): a start that hangs says where it waits and exits non-zero, a blocked event loop is
dumped and ended, a ready service is left alone, and SIGTERM ends a service at any point of its
start. Each case runs in a process of its own: what it checks ends processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from baton_common.startwatch import NOT_READY

PRELUDE = """
import asyncio, logging, sys, time
from baton_common.startwatch import watched, ready
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
"""


def run(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )


def test_a_start_that_hangs_says_where_it_waits_and_exits_non_zero() -> None:
    done = run(
        """
        async def wait_for_the_bus():
            await asyncio.Event().wait()  # a server that never answers

        async def main():
            await wait_for_the_bus()

        asyncio.run(watched("demo", main(), 2.0, every=0.5))
        """
    )
    assert done.returncode == NOT_READY, done.stderr
    still = [line for line in done.stderr.splitlines() if "demo still starting after" in line]
    assert still and "waiting in main (<string>:" in still[0]
    assert "> wait_for_the_bus (<string>:" in still[0]
    gave_up = [line for line in done.stderr.splitlines() if "did not become ready" in line]
    assert gave_up and "wait_for_the_bus" in gave_up[0] and "ERROR" in gave_up[0]
    assert "Current thread" in done.stderr  # every thread's stack, for what no coroutine shows


def test_a_start_step_inside_wait_for_is_named() -> None:
    done = run(
        """
        async def read_the_catalogue():
            await asyncio.Event().wait()

        async def main():
            await asyncio.wait_for(read_the_catalogue(), 3600)

        asyncio.run(watched("demo", main(), 1.0, every=0.3))
        """
    )
    assert done.returncode == NOT_READY, done.stderr
    assert "read_the_catalogue (<string>:" in done.stderr


def test_a_blocked_event_loop_is_dumped_and_ended() -> None:
    """No coroutine runs when a start step blocks the loop: faulthandler's thread ends it."""
    done = run(
        """
        def stuck_step():
            time.sleep(3600)  # a synchronous call that never returns

        async def main():
            stuck_step()

        asyncio.run(watched("demo", main(), 1.0, every=0.3, grace=0.5))
        """
    )
    assert done.returncode != 0, done.stderr
    assert "Timeout" in done.stderr and "stuck_step" in done.stderr


def test_a_ready_service_is_not_ended_by_its_start_bound() -> None:
    done = run(
        """
        async def main():
            ready()
            await asyncio.sleep(2.5)  # past the bound and its grace: serving, not starting
            print("served")

        asyncio.run(watched("demo", main(), 1.0, every=0.3, grace=0.5))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "served" and "still starting" not in done.stderr


def test_sigterm_ends_a_service_whose_last_start_step_hangs() -> None:
    """The last step before "ready" (``tune_gc``) blocks: SIGTERM must still end the process.
    Its drain handler, set before that step, waited for an event loop that never ran again."""
    script = """
import asyncio, sys, time
from baton_common import service
from baton_common.settings import Settings

def stuck() -> None:
    print("tuning", flush=True)
    time.sleep(3600)

service.tune_gc = stuck
runtime = service.Runtime("demo", Settings(), bus=None)
asyncio.run(runtime.serve_forever())
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "tuning"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_a_failed_start_with_a_task_that_will_not_end_exits_naming_it() -> None:
    """The health port's bind fails, and another task does not end when cancelled: asyncio's
    own end of the loop waited for it for ever, the traceback never printed (reproduced with
    the executor, 2 starts in 15, its port taken)."""
    done = run(
        """
        async def stubborn():
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass  # a library's loop that swallows its cancellation

        async def main():
            asyncio.create_task(stubborn(), name="stubborn")
            await asyncio.sleep(0)
            raise OSError("address already in use")

        asyncio.run(watched("demo", main(), 60.0))
        """
    )
    assert done.returncode == 1, done.stderr
    assert "demo failed" in done.stderr and "OSError: address already in use" in done.stderr
    late = [line for line in done.stderr.splitlines() if "task stubborn did not end" in line]
    assert late and "stubborn (<string>:" in late[0]


async def test_a_periodic_loop_ends_when_its_call_swallowed_the_cancellation() -> None:
    """Python 3.11's ``wait_for`` returns a reply that arrives with the cancellation (nats-py's
    requests): ``every`` must still end instead of sleeping its whole interval (an hour for
    the executor's ``keep_catalogue``: the process could not end)."""
    import asyncio

    from baton_common.service import every

    calls = asyncio.Event()

    async def swallowing() -> None:
        calls.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return  # as wait_for does when the reply is in

    task = asyncio.create_task(every(3600, swallowing, "keeping"))
    await calls.wait()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert task in done and task.cancelled()


def test_a_task_that_exits_the_process_does_not_leave_it_hanging() -> None:
    """uvicorn exits (``sys.exit``) from its task when the API port is taken, after the
    gateway said "ready": the loop's end then waited for ever on a task that did not end,
    and the gateway ignored SIGTERM (seen in bench/start_loop.py)."""
    done = run(
        """
        async def stubborn():
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

        async def http():
            raise SystemExit(3)

        async def main():
            ready()
            asyncio.create_task(stubborn(), name="stubborn")
            asyncio.create_task(http(), name="http")
            await asyncio.Event().wait()

        asyncio.run(watched("demo", main(), 60.0))
        """
    )
    assert done.returncode == 1, done.stderr
    assert "task stubborn did not end" in done.stderr
