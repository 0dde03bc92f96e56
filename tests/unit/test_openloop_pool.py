"""The load generator's connection pool: requests go out on the least recently used idle connection (so load
spreads over every open connection, hence over every server worker that accepted one), and wait, in order, when
none is idle."""
from __future__ import annotations

from loadtest.openloop import _Pool, _Tally


class _Conn:
    def __init__(self, name: str) -> None:
        self.name, self.sent = name, []

    def send(self, request: bytes, scheduled: float) -> None:
        self.sent.append(request)


def test_requests_rotate_over_idle_connections_and_queue_when_all_are_busy():
    pool = _Pool("127.0.0.1", 1, max_connections=3, tally=_Tally(sample_every=10**9))
    conns = [_Conn(n) for n in "abc"]
    pool.idle.extend(conns)
    pool.size = 3
    for i in range(3):
        pool.submit(b"r%d" % i, 0.0)
    assert [c.sent for c in conns] == [[b"r0"], [b"r1"], [b"r2"]]
    pool.submit(b"r3", 0.0)  # all busy, pool at its maximum: waits for the first connection to free up
    assert pool.waiting and all(len(c.sent) == 1 for c in conns)
    pool.finished(conns[1], 0.0, 200, b"")
    assert conns[1].sent == [b"r1", b"r3"] and not pool.waiting
    pool.finished(conns[0], 0.0, 200, b"")
    pool.finished(conns[1], 0.0, 200, b"")
    pool.submit(b"r4", 0.0)  # idle: a (freed first), then b
    assert conns[0].sent == [b"r0", b"r4"]
