"""One request's CPU segment per event-loop iteration, so sockets are polled between segments.

A micro-batch resolves many requests at once, and each then runs its next stretch of Python (candidates, features,
rules, the answer) before it awaits again. Run back to back in one iteration, those stretches delay the next poll
of the sockets: a request that admission control would turn away in 0.1 ms of CPU waits for all of them. A request
that awaits `LoopTurns.take()` first runs its stretch in an iteration of its own, after a poll; requests take
turns in arrival order. An extra iteration costs one non-blocking poll (a few microseconds).
"""
from __future__ import annotations

import asyncio
from collections import deque


class LoopTurns:
    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future] = deque()
        self._releasing = False

    async def take(self) -> None:
        """Returns in a later loop iteration than any other caller's turn (at most one turn is granted per
        iteration)."""
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        self._waiting.append(turn)
        if not self._releasing:
            self._releasing = True
            loop.call_soon(self._release, loop)
        await turn

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        # set_result schedules the waiter's step for the next iteration, and so does call_soon the next release:
        # that iteration polls the sockets, runs this waiter's stretch, then grants the next turn
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():  # a waiter cancelled (deadline) gives its turn up
                turn.set_result(None)
                break
        if self._waiting:
            loop.call_soon(self._release, loop)
        else:
            self._releasing = False
