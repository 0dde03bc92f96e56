"""LoopTurns: callers waiting for a turn get one each, in arrival order, each in a loop iteration of its own (so
the loop polls its sockets between two callers' CPU stretches); a cancelled waiter gives its turn up."""
from __future__ import annotations

import asyncio

from serving.loop_turns import LoopTurns


class IterationCounter:
    """Counts event-loop iterations: a callback that reschedules itself once per iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.n, self.loop, self.on = 0, loop, True
        loop.call_soon(self.tick)

    def tick(self) -> None:
        self.n += 1
        if self.on:
            self.loop.call_soon(self.tick)


def test_waiters_get_one_turn_per_loop_iteration_in_arrival_order():
    async def main():
        turns, counter = LoopTurns(), IterationCounter(asyncio.get_running_loop())
        got: list[tuple[int, int]] = []

        async def waiter(i):
            await turns.take()
            got.append((i, counter.n))

        await asyncio.gather(*(waiter(i) for i in range(6)))
        counter.on = False
        return got

    got = asyncio.run(main())
    assert [i for i, _ in got] == list(range(6))
    iterations = [n for _, n in got]
    assert all(b > a for a, b in zip(iterations, iterations[1:]))  # never two turns in one iteration


def test_a_cancelled_waiter_gives_its_turn_up():
    async def main():
        turns = LoopTurns()
        order: list[str] = []

        async def waiter(name):
            await turns.take()
            order.append(name)

        a, b, c = (asyncio.ensure_future(waiter(n)) for n in "abc")
        await asyncio.sleep(0)  # all three wait
        b.cancel()
        await asyncio.gather(a, c)
        await turns.take()  # the releaser stopped and starts again for a new waiter
        return order, b.cancelled()

    order, cancelled = asyncio.run(main())
    assert order == ["a", "c"] and cancelled
