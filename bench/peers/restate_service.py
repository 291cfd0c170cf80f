"""The Restate peer's service: K no-op steps, each a journaled ``ctx.run``.

Served by hypercorn (HTTP/2 cleartext, which the Restate server speaks to deployments) from
``restate_bench.py``; the server calls it, journals every step's result in its log, and only
then lets the handler go on.
"""

from __future__ import annotations

import restate

bench = restate.Service("Bench")


def noop(x: int) -> int:
    return x


@bench.handler()
async def chain(ctx: restate.Context, k: int) -> int:
    x = 0
    for i in range(k):  # each step's result is in Restate's log before the next starts
        x = await ctx.run_typed(f"s{i}", noop, restate.RunOptions(), x + 1)
    return x


@bench.handler()
async def fanout(ctx: restate.Context, k: int) -> int:
    branches = [ctx.run_typed(f"b{i}", noop, restate.RunOptions(), i) for i in range(k)]
    parts = [await b for b in branches]  # all started before the first is awaited
    return await ctx.run_typed("join", noop, restate.RunOptions(), sum(parts))


app = restate.app(services=[bench])
