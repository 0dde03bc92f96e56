"""Micro-batching across concurrent requests: one model call (user tower and index search; ranker) for every
request that reaches that stage within a short, bounded wait.

The wait adapts to load: with no other request upstream of the stage a call runs at once; otherwise the first
caller waits at most max_wait_ms, less when the stage's recent arrival gap says the others will come sooner, and
the batch runs as soon as no request is left upstream. Requests that started on different model versions (a hot
swap) never share a call.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_WAIT_MS = 2.0


@dataclass
class BatchStats:
    calls: int = 0
    requests: int = 0
    waited_ms: float = 0.0

    def to_json(self) -> dict:
        return {"calls": self.calls, "requests": self.requests,
                "mean_batch": self.requests / self.calls if self.calls else 0.0,
                "mean_wait_ms": self.waited_ms / self.calls if self.calls else 0.0}


@dataclass
class _Pending:
    key: tuple
    fn: Callable[[list], Sequence]
    inputs: list = field(default_factory=list)
    futures: list[asyncio.Future] = field(default_factory=list)
    opened: float = 0.0
    timer: asyncio.TimerHandle | None = None


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def concat_rows(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A batch function from a batch-first model: callers' (n_i, ...) inputs in one call, (n_i, ...) rows back."""
    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) == 1:
            return [fn(inputs[0])]
        return np.split(fn(np.concatenate(inputs)), np.cumsum([len(x) for x in inputs])[:-1])
    return run


class MicroBatcher:
    """Runs fn(list of callers' inputs) -> list of their outputs, for callers that arrive close together.

    upstream: how many requests in flight have not reached this stage yet (the pipeline counts them; a caller
    counts itself out before calling run): only those can still join a batch. min_batch: a first caller waits only
    if at least that many could share the call (below it, the model gains nothing from batching).
    """

    def __init__(self, max_wait_ms: float, upstream: Callable[[], int], min_batch: int = 2,
                 executor: Executor | None = None, offload: Callable[[], bool] = lambda: True):
        if not 0 <= max_wait_ms <= MAX_WAIT_MS:
            raise ValueError(f"max_wait_ms must be within 0..{MAX_WAIT_MS} (a batch must not eat the budget)")
        self.max_wait_s, self.upstream, self.min_batch = max_wait_ms / 1e3, upstream, min_batch
        self.executor, self.offload = executor, offload  # model calls on the executor while offload() says so
        self.stats = BatchStats()
        self._pending: _Pending | None = None
        self._gap_s = max_wait_ms / 1e3  # EWMA of the time between arrivals at this stage
        self._last_arrival = 0.0

    async def run(self, key: tuple, fn: Callable[[list], Sequence], x: Any) -> Any:
        """fn([x])[0] for this caller, possibly computed in one call with other callers' inputs. `key`: the objects
        fn computes with (model, tables), compared by identity; only calls with the same key share a batch."""
        if self.max_wait_s == 0:
            self.stats.calls += 1
            self.stats.requests += 1
            return (await self._call(fn, [x]))[0]
        now = time.perf_counter()
        self._gap_s += 0.1 * (min(now - self._last_arrival, 1.0) - self._gap_s)
        self._last_arrival = now
        if self._pending is not None and not _same(self._pending.key, key):
            self._flush()
        others = self.upstream()
        if self._pending is None:
            if others + 1 < self.min_batch:  # idle, or too few could come to make a batch pay: no wait
                self.stats.calls += 1
                self.stats.requests += 1
                return (await self._call(fn, [x]))[0]
            self._pending = _Pending(key, fn, opened=now)
            self._pending.timer = asyncio.get_running_loop().call_later(
                min(self.max_wait_s, self._gap_s * others), self._flush)
        pending = self._pending
        future = asyncio.get_running_loop().create_future()
        pending.inputs.append(x)
        pending.futures.append(future)
        if others <= 0:  # no one else can come: waiting longer cannot grow the batch
            self._flush()
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self.stats.calls += 1
        self.stats.requests += len(pending.inputs)
        self.stats.waited_ms += (time.perf_counter() - pending.opened) * 1e3
        if self._off_loop():
            call = asyncio.get_running_loop().run_in_executor(self.executor, pending.fn, pending.inputs)
            call.add_done_callback(lambda c: _deliver_call(pending.futures, c))
            return
        try:
            out, exc = pending.fn(pending.inputs), None
        except Exception as e:  # noqa: BLE001 - every waiting request gets the model's error, as it would alone
            out, exc = None, e
        _deliver(pending.futures, exc, out)

    def _off_loop(self) -> bool:
        return self.executor is not None and self.offload()

    async def _call(self, fn: Callable[[list], Sequence], inputs: list) -> Sequence:
        if not self._off_loop():
            return fn(inputs)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, inputs)


def _deliver_call(futures: list[asyncio.Future], call: asyncio.Future) -> None:
    exc = call.exception()
    _deliver(futures, exc, None if exc is not None else call.result())


def _deliver(futures: list[asyncio.Future], exc: BaseException | None, out: Sequence | None) -> None:
    """Each waiting caller gets its row of the batch's output, or the batch's error (as it would alone)."""
    for i, f in enumerate(futures):
        if f.done():  # a caller whose deadline passed has gone; the others still get theirs
            continue
        if exc is not None:
            f.set_exception(exc)
        else:
            f.set_result(out[i])
