"""Micro-batching: concurrent callers share one model call and each gets exactly its own rows; an idle caller never
waits; the wait is bounded; different models never share a call; a model error reaches every caller."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import MicroBatcher, concat_rows


class Model:
    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        return x.sum(axis=1) * 2


def test_concurrent_callers_share_one_call_and_get_their_own_rows():
    model, upstream = Model(), [0]
    batcher = MicroBatcher(2.0, lambda: upstream[0])
    inputs = [np.full((n, 3), float(i)) for i, n in enumerate((1, 4, 2, 3))]

    async def one(x):
        upstream[0] += 1
        await asyncio.sleep(0)  # all four are in flight before the first reaches the model
        upstream[0] -= 1  # reaches the stage
        return await batcher.run((model,), concat_rows(model), x)

    async def main():
        return await asyncio.gather(*(one(x) for x in inputs))

    outs = asyncio.run(main())
    assert model.calls == [10]  # one call: no one was left upstream, so the batch ran without the full wait
    for x, y in zip(inputs, outs):
        np.testing.assert_array_equal(y, x.sum(axis=1) * 2)
    assert batcher.stats.to_json()["mean_batch"] == 4


def test_an_idle_caller_runs_at_once_and_a_wait_is_bounded():
    model = Model()
    idle = MicroBatcher(2.0, lambda: 0)  # no other request upstream

    async def timed(batcher):
        t = time.perf_counter()
        await batcher.run((model,), concat_rows(model), np.ones((1, 3)))
        return time.perf_counter() - t

    assert asyncio.run(timed(idle)) < 0.001
    # others upstream that never come: the first caller waits at most max_wait_ms, then runs alone
    waiting = MicroBatcher(2.0, lambda: 4)
    assert 0.0005 < asyncio.run(timed(waiting)) < 0.05
    assert model.calls == [1, 1]


def test_calls_for_different_models_never_share_a_batch():
    a, b = Model(), Model()
    batcher = MicroBatcher(2.0, lambda: 1)

    async def main():
        return await asyncio.gather(batcher.run((a,), concat_rows(a), np.ones((2, 3))),
                                    batcher.run((b,), concat_rows(b), np.ones((3, 3))))

    ya, yb = asyncio.run(main())
    assert a.calls == [2] and b.calls == [3] and ya.shape == (2,) and yb.shape == (3,)


def test_a_model_error_reaches_every_caller_of_the_batch():
    def broken(_):
        raise RuntimeError("model failed")

    batcher = MicroBatcher(2.0, lambda: 1)

    async def main():
        return await asyncio.gather(*(batcher.run(("m",), concat_rows(broken), np.ones((1, 3))) for _ in range(2)),
                                    return_exceptions=True)

    assert [type(r) for r in asyncio.run(main())] == [RuntimeError, RuntimeError]


def test_the_wait_bound_is_checked():
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(5.0, lambda: 1)


def test_with_an_executor_the_batch_runs_off_the_event_loop_and_errors_still_reach_every_caller():
    threads: list[str] = []

    def model(x: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        if (x < 0).any():
            raise ValueError("bad row")
        return x.sum(axis=1)

    upstream = [0]
    with ThreadPoolExecutor(1, thread_name_prefix="model") as ex:
        batcher = MicroBatcher(2.0, lambda: upstream[0], executor=ex)

        async def one(x):
            upstream[0] += 1
            await asyncio.sleep(0)
            upstream[0] -= 1
            return await batcher.run((model,), concat_rows(model), x)

        async def main(xs):
            return await asyncio.gather(*(one(x) for x in xs), return_exceptions=True)

        outs = asyncio.run(main([np.full((n, 2), float(n)) for n in (1, 2, 3)]))
        assert [o.tolist() for o in outs] == [[2.0], [4.0, 4.0], [6.0, 6.0, 6.0]]
        errs = asyncio.run(main([np.ones((1, 2)), -np.ones((1, 2))]))  # one bad row fails the shared call
        assert all(isinstance(e, ValueError) for e in errs)
        alone = asyncio.run(MicroBatcher(0.0, lambda: 0, executor=ex).run((model,), concat_rows(model),
                                                                          np.ones((1, 2))))
        assert alone.tolist() == [2.0]
    assert threads and all(t.startswith("model") for t in threads)
    assert len(threads) == 3  # one call per batch: [1, 2, 3], [1, -1], the lone one


def test_offload_decides_per_call_whether_the_executor_is_used():
    threads: list[str] = []

    def model(x: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return x.sum(axis=1)

    now = [False]
    with ThreadPoolExecutor(1, thread_name_prefix="model") as ex:
        batcher = MicroBatcher(0.0, lambda: 0, executor=ex, offload=lambda: now[0])
        asyncio.run(batcher.run((model,), concat_rows(model), np.ones((1, 2))))
        now[0] = True
        asyncio.run(batcher.run((model,), concat_rows(model), np.ones((1, 2))))
    assert threads[0] == threading.main_thread().name and threads[1].startswith("model")
